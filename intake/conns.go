package intake

import "sync"

// Conn is a publishing connection's state (a *broker.Conn).
type Conn interface {
	Connected() bool
	Blocked() bool
}

// ConnHolds are the holds a connection puts on the gates of the queues
// that publish on it: one while it is down, one while the broker blocks
// it. Zero: none.
type ConnHolds struct{ Down, Blocked Hold }

// Conns holds the gates of the queues that publish on a connection while
// that connection is down or blocked: a task taken then could not be
// answered, and would only come back as a duplicate. It is safe for
// concurrent use.
type Conns struct {
	mu    sync.Mutex
	gates map[Conn][]*Gate
	holds map[Conn]ConnHolds
}

// NewConns returns an empty Conns.
func NewConns() *Conns {
	return &Conns{gates: map[Conn][]*Gate{}, holds: map[Conn]ConnHolds{}}
}

// Track names the holds c puts on its gates. Call it before c's events
// are reported through Lost, Restored, Blocked and Unblocked.
func (cs *Conns) Track(c Conn, h ConnHolds) {
	cs.mu.Lock()
	cs.holds[c] = h
	cs.mu.Unlock()
}

// Add makes g held while c is down or blocked, starting from c's state
// now. Registering before reading the state means no event is missed: one
// that comes after the read applies on top of it.
func (cs *Conns) Add(c Conn, g *Gate) {
	cs.mu.Lock()
	cs.gates[c] = append(cs.gates[c], g)
	h := cs.holds[c]
	cs.mu.Unlock()
	if h.Down != 0 && !c.Connected() {
		g.Set(h.Down, true)
	}
	if h.Blocked != 0 && c.Blocked() {
		g.Set(h.Blocked, true)
	}
}

// Remove takes g from every connection's gates.
func (cs *Conns) Remove(g *Gate) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for c, gs := range cs.gates {
		for i, x := range gs {
			if x == g {
				cs.gates[c] = append(gs[:i:i], gs[i+1:]...)
				break
			}
		}
	}
}

// Down sets or clears c's down hold on its gates.
func (cs *Conns) Down(c Conn, on bool) { cs.set(c, func(h ConnHolds) Hold { return h.Down }, on) }

// Blocked sets or clears c's blocked hold on its gates.
func (cs *Conns) Blocked(c Conn, on bool) { cs.set(c, func(h ConnHolds) Hold { return h.Blocked }, on) }

func (cs *Conns) set(c Conn, which func(ConnHolds) Hold, on bool) {
	cs.mu.Lock()
	hold := which(cs.holds[c])
	gates := append([]*Gate(nil), cs.gates[c]...)
	cs.mu.Unlock()
	if hold == 0 {
		return
	}
	for _, g := range gates {
		g.Set(hold, on)
	}
}
