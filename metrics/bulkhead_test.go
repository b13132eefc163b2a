package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vsm-relay/relay/breaker"
	"github.com/vsm-relay/relay/bulkhead"
)

func TestBulkheadCollectorExposesStats(t *testing.T) {
	tests := []struct {
		name  string
		stats []bulkhead.Stats
		want  string
	}{
		{
			name: "two bulkheads",
			stats: []bulkhead.Stats{
				{
					Name: "worker_agent", Available: 5, Busy: 25, Waiting: 4, Capacity: 30, Overflowing: 5,
					Checkouts: 1000, RejectedFull: 7, RejectedTimeout: 3, RejectedRateLimited: 0, HeldTooLong: 1,
					Cancelled: 9,
				},
				{
					Name: "llm_worker", Available: 7, Busy: 0, Capacity: 7,
					Checkouts: 12, RejectedRateLimited: 2,
				},
			},
			want: `
# HELP relay_bulkhead_available Bulkhead slots free to check out.
# TYPE relay_bulkhead_available gauge
relay_bulkhead_available{bulkhead="llm_worker"} 7
relay_bulkhead_available{bulkhead="worker_agent"} 5
# HELP relay_bulkhead_busy Bulkhead slots checked out.
# TYPE relay_bulkhead_busy gauge
relay_bulkhead_busy{bulkhead="llm_worker"} 0
relay_bulkhead_busy{bulkhead="worker_agent"} 25
# HELP relay_bulkhead_capacity Bulkhead slots in all: size plus overflow.
# TYPE relay_bulkhead_capacity gauge
relay_bulkhead_capacity{bulkhead="llm_worker"} 7
relay_bulkhead_capacity{bulkhead="worker_agent"} 30
# HELP relay_bulkhead_checkouts_total Successful bulkhead checkouts.
# TYPE relay_bulkhead_checkouts_total counter
relay_bulkhead_checkouts_total{bulkhead="llm_worker"} 12
relay_bulkhead_checkouts_total{bulkhead="worker_agent"} 1000
# HELP relay_bulkhead_held_too_long Bulkhead slots held longer than the hold warning: likely leaks.
# TYPE relay_bulkhead_held_too_long gauge
relay_bulkhead_held_too_long{bulkhead="llm_worker"} 0
relay_bulkhead_held_too_long{bulkhead="worker_agent"} 1
# HELP relay_bulkhead_overflowing Bulkhead overflow slots in use.
# TYPE relay_bulkhead_overflowing gauge
relay_bulkhead_overflowing{bulkhead="llm_worker"} 0
relay_bulkhead_overflowing{bulkhead="worker_agent"} 5
# HELP relay_bulkhead_rejected_total Bulkhead checkouts turned away, by reason: full, timeout or rate_limited.
# TYPE relay_bulkhead_rejected_total counter
relay_bulkhead_rejected_total{bulkhead="llm_worker",reason="full"} 0
relay_bulkhead_rejected_total{bulkhead="llm_worker",reason="rate_limited"} 2
relay_bulkhead_rejected_total{bulkhead="llm_worker",reason="timeout"} 0
relay_bulkhead_rejected_total{bulkhead="worker_agent",reason="full"} 7
relay_bulkhead_rejected_total{bulkhead="worker_agent",reason="rate_limited"} 0
relay_bulkhead_rejected_total{bulkhead="worker_agent",reason="timeout"} 3
# HELP relay_bulkhead_waiting Callers queued for a bulkhead slot.
# TYPE relay_bulkhead_waiting gauge
relay_bulkhead_waiting{bulkhead="llm_worker"} 0
relay_bulkhead_waiting{bulkhead="worker_agent"} 4
`,
		},
		{
			name:  "no bulkheads",
			stats: []bulkhead.Stats{},
			want:  ``,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewBulkheadCollector(func() []bulkhead.Stats { return tt.stats })
			if err := testutil.CollectAndCompare(c, strings.NewReader(tt.want)); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestBulkheadCollectorWithNilFuncExposesNothing(t *testing.T) {
	if err := testutil.CollectAndCompare(NewBulkheadCollector(nil), strings.NewReader(``)); err != nil {
		t.Error(err)
	}
}

func TestBulkheadRejectionReasonsMatchTheBulkheadPackage(t *testing.T) {
	for err, want := range map[error]string{
		bulkhead.ErrFull:        RejectedFull,
		bulkhead.ErrTimeout:     RejectedTimeout,
		bulkhead.ErrRateLimited: RejectedRateLimited,
	} {
		if got := bulkhead.Reason(err); got != want {
			t.Errorf("bulkhead.Reason(%v): got %q, the reason label here is %q", err, got, want)
		}
	}
}

func TestBulkheadCollectorReportsABadNameAsAnErrorNotAPanic(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(NewBulkheadCollector(func() []bulkhead.Stats {
		return []bulkhead.Stats{{Name: "bad\xff", Busy: 1}, {Name: "good", Busy: 2}}
	})); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err == nil || !strings.Contains(err.Error(), "relay_bulkhead_") {
		t.Fatalf("Gather: got error %v, want one about a relay_bulkhead_ metric", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "relay_bulkhead_busy" {
			if n := len(mf.GetMetric()); n != 1 || mf.GetMetric()[0].GetGauge().GetValue() != 2 {
				t.Errorf("relay_bulkhead_busy: got %d series, want only the good bulkhead's 2", n)
			}
		}
	}
}

func TestPullCollectorsRegisterBesideNewAndPassLint(t *testing.T) {
	m, reg := newTest(t)
	touchAll(m)
	if err := reg.Register(NewBulkheadCollector(func() []bulkhead.Stats {
		return []bulkhead.Stats{{Name: "api_agent", Capacity: 20, Available: 20}}
	})); err != nil {
		t.Fatalf("registering the bulkhead collector next to New: %v", err)
	}
	if err := reg.Register(NewBreakerCollector(func() []breaker.Snapshot {
		return []breaker.Snapshot{{Name: "llm_api", State: breaker.HalfOpen}}
	})); err != nil {
		t.Fatalf("registering the breaker collector next to New: %v", err)
	}
	lint(t, reg)
}
