package promreg

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegisterAllIsAllOrNone(t *testing.T) {
	reg := prometheus.NewRegistry()
	clash := prometheus.NewCounter(prometheus.CounterOpts{Name: "b_total"})
	if err := reg.Register(clash); err != nil {
		t.Fatal(err)
	}
	a := prometheus.NewCounter(prometheus.CounterOpts{Name: "a_total"})
	b := prometheus.NewCounter(prometheus.CounterOpts{Name: "b_total"})
	i, err := RegisterAll(reg, a, b)
	var are prometheus.AlreadyRegisteredError
	if i != 1 || !errors.As(err, &are) {
		t.Fatalf("RegisterAll = %d, %v; want 1 and an AlreadyRegisteredError", i, err)
	}
	// a was taken back: registering it again succeeds.
	if err := reg.Register(a); err != nil {
		t.Fatalf("a left registered after the clash: %v", err)
	}
	reg.Unregister(clash)
	reg.Unregister(a)
	if i, err := RegisterAll(reg, a, b); i != -1 || err != nil {
		t.Fatalf("RegisterAll on a clean registry = %d, %v", i, err)
	}
}
