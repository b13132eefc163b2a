package broker

import "sync"

// notifier calls listeners outside any lock, in the order events were
// raised, without a goroutine of its own: whoever raises an event while no
// one is delivering becomes the deliverer and drains the queue.
type notifier[T any] struct {
	mu         sync.Mutex
	listeners  []func(T)
	queue      []T
	delivering bool
}

func (n *notifier[T]) add(fn func(T)) {
	n.mu.Lock()
	n.listeners = append(n.listeners, fn)
	n.mu.Unlock()
}

func (n *notifier[T]) emit(ev T) {
	n.mu.Lock()
	n.queue = append(n.queue, ev)
	if n.delivering {
		n.mu.Unlock()
		return
	}
	n.delivering = true
	for len(n.queue) > 0 {
		next := n.queue[0]
		n.queue = n.queue[1:]
		ls := n.listeners
		n.mu.Unlock()
		for _, fn := range ls {
			fn(next)
		}
		n.mu.Lock()
	}
	n.delivering = false
	n.mu.Unlock()
}
