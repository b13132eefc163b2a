package health

import (
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/clock"
	"github.com/vsm-relay/relay/internal/fielderr"
)

// Peek sees what Check would, and leaves no trace: no event, no log, no
// gauge, no latest status, no move of the rejection baseline.
func TestPeek(t *testing.T) {
	tests := []struct {
		name   string
		change func(w *world)
		want   string
	}{
		{"nothing changed", func(*world) {}, "healthy: "},
		{"a breaker opened", func(w *world) { w.breakers[1].State = breaker.Open }, "degraded: breaker llm_api is open"},
		{"a pool rejected", func(w *world) { w.bulkheads[0].RejectedFull = 4 },
			"degraded: bulkhead api_agent rejected 4 since the last check"},
		{"the broker is gone", func(w *world) { w.amqp.Connected = false }, "unhealthy: broker is unreachable"},
	}
	reasons := func(r Report) string { return string(r.Overall) + ": " + strings.Join(r.Reasons, "; ") }
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := healthyWorld()
			m, evs, reg, logs := newTestMonitor(t, w, nil)
			m.Check()
			logged := logs.Len()
			w.set(tt.change)
			for i := range 2 {
				r := m.Peek()
				if got := reasons(r); got != tt.want {
					t.Fatalf("Peek %d: %q, want %q", i, got, tt.want)
				}
				if r.Instance != "relay-7f3a" || !r.At.Equal(t0) {
					t.Fatalf("Peek %d: instance %q at %v", i, r.Instance, r.At)
				}
			}
			if e := evs.list(); len(e) != 0 {
				t.Fatalf("Peek raised %+v", e)
			}
			if logs.Len() != logged {
				t.Fatalf("Peek logged: %s", logs.String()[logged:])
			}
			if g := gaugeValue(t, reg); g != 0 {
				t.Fatalf("status gauge = %v after Peek, want 0 (healthy)", g)
			}
			// Check then finds the same, as a change from healthy: Peek
			// neither recorded the status nor moved the baseline.
			if got := reasons(m.Check()); got != tt.want {
				t.Fatalf("Check after Peek: %q, want %q", got, tt.want)
			}
			wantEvents := 1
			if tt.want == "healthy: " {
				wantEvents = 0
			}
			if e := evs.list(); len(e) != wantEvents {
				t.Fatalf("Check after Peek raised %d events, want %d", len(e), wantEvents)
			}
		})
	}
}

func TestSetConfigDegradedUtilization(t *testing.T) {
	w := healthyWorld()
	w.set(func(w *world) { w.bulkheads[0].Busy, w.bulkheads[0].Available = 12, 8 }) // 60% busy
	m, evs, _, _ := newTestMonitor(t, w, nil)
	if r := m.Check(); r.Overall != Healthy {
		t.Fatalf("at 60%% busy with the 80%% default: %s %q", r.Overall, r.Reasons)
	}
	if err := m.SetConfig(Config{DegradedUtilization: 0.5}); err != nil {
		t.Fatal(err)
	}
	if e := evs.list(); len(e) != 0 {
		t.Fatalf("SetConfig raised %+v", e)
	}
	r := m.Check()
	if r.Overall != Degraded || r.Reasons[0] != "bulkhead api_agent 60% busy (threshold 50%)" {
		t.Fatalf("after lowering the threshold: %s %q", r.Overall, r.Reasons)
	}
	if e := evs.list(); len(e) != 1 || e[0].Event != "degraded" {
		t.Fatalf("events: %+v", e)
	}
}

func TestSetConfigInstanceKept(t *testing.T) {
	tests := []struct {
		name     string
		instance string
	}{
		{"empty stands for the current one", ""},
		{"another is ignored", "relay-other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _, _, _ := newTestMonitor(t, healthyWorld(), nil)
			if err := m.SetConfig(Config{Instance: tt.instance, Exchange: "ops.health"}); err != nil {
				t.Fatal(err)
			}
			if r := m.Peek(); r.Instance != "relay-7f3a" {
				t.Fatalf("Instance = %q, want relay-7f3a", r.Instance)
			}
			if k := m.RoutingKey(); k != "health.relay-7f3a" {
				t.Fatalf("RoutingKey = %q", k)
			}
			if c := m.config(); c.Exchange != "ops.health" || c.Instance != "relay-7f3a" || c.Interval != DefaultInterval {
				t.Fatalf("config = %+v", c)
			}
		})
	}
}

func TestSetConfigInvalid(t *testing.T) {
	m, _, _, _ := newTestMonitor(t, healthyWorld(), nil)
	err := m.SetConfig(Config{Interval: -time.Second, DegradedUtilization: 2})
	var fe *fielderr.Error
	if !errors.As(err, &fe) {
		t.Fatalf("SetConfig(bad) = %v, want a *fielderr.Error", err)
	}
	if c := m.config(); c != (Config{Instance: "relay-7f3a"}).WithDefaults() {
		t.Fatalf("config changed by a refused SetConfig: %+v", c)
	}
}

// Run publishes to the new exchange from the next report, and checks at
// the new interval from the change on.
func TestSetConfigRun(t *testing.T) {
	tests := []struct {
		name     string
		interval time.Duration
		// report times after the one at start, as offsets from it; the
		// change is made 1s after start
		want []time.Duration
	}{
		{"shortened", 5 * time.Second, every(6*time.Second, 5*time.Second, 61*time.Second)},
		{"lengthened", time.Minute, []time.Duration{61 * time.Second}},
		{"unchanged", DefaultInterval, every(DefaultInterval, DefaultInterval, 61*time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				pub := &fakePublisher{}
				m, _, _, _ := newTestMonitor(t, healthyWorld(), pub, WithClock(clock.Real))
				start := time.Now()
				stop := run(t, m)
				defer stop()
				synctest.Wait()
				time.Sleep(time.Second)
				if err := m.SetConfig(Config{Exchange: "ops.health", Interval: tt.interval}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(61*time.Second - time.Since(start))
				synctest.Wait()
				got := pub.reports()
				if len(got) != 1+len(tt.want) {
					t.Fatalf("%d reports in 61s, want %d", len(got), 1+len(tt.want))
				}
				if got[0].exchange != "vsm.health" {
					t.Fatalf("report at start went to %s", got[0].exchange)
				}
				for i, at := range tt.want {
					r := got[i+1]
					if d := r.report.At.Sub(start); d != at || r.exchange != "ops.health" {
						t.Fatalf("report %d: at +%v to %s, want at +%v to ops.health", i+1, d, r.exchange, at)
					}
				}
			})
		})
	}
}

// every lists from, from+step, ... up to until.
func every(from, step, until time.Duration) []time.Duration {
	var out []time.Duration
	for d := from; d <= until; d += step {
		out = append(out, d)
	}
	return out
}

// A change made before Run starts is simply what Run starts with.
func TestSetConfigBeforeRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pub := &fakePublisher{}
		m, _, _, _ := newTestMonitor(t, healthyWorld(), pub, WithClock(clock.Real))
		if err := m.SetConfig(Config{Interval: 10 * time.Second}); err != nil {
			t.Fatal(err)
		}
		stop := run(t, m)
		defer stop()
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if n := len(pub.reports()); n != 4 {
			t.Fatalf("%d reports in 30s at a 10s interval, want 4", n)
		}
	})
}
