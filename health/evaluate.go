package health

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Inputs is everything the health rules look at.
type Inputs struct {
	AMQP      AMQPStatus
	Breakers  map[string]BreakerStatus
	Bulkheads map[string]BulkheadStatus
	// NewRejections is, per pool, how many checkouts it rejected since the
	// previous check. Pools not in it rejected none.
	NewRejections map[string]uint64
	// TargetBreakers guard the targets: when every one of them is open the
	// relay can deliver nothing. Names that are not in Breakers count as
	// not open.
	TargetBreakers []string
	// DegradedUtilization is the share of a pool's capacity in use at
	// which it counts as degraded. Zero or less turns the rule off.
	DegradedUtilization float64
}

// Evaluate applies the health rules (see the package documentation) and
// returns the status with the reasons for it, unhealthy reasons first, in
// a stable order. It is a pure function.
func Evaluate(in Inputs) (Status, []string) {
	s, reasons, _ := evaluate(in)
	return s, reasons
}

// evaluate also returns the share of components in trouble (the broker
// counting as one), the intensity of a health event.
func evaluate(in Inputs) (Status, []string, float64) {
	var unhealthy, degraded []string
	troubled := 0

	switch {
	case !in.AMQP.Connected:
		unhealthy = append(unhealthy, "broker is unreachable")
		troubled++
	case in.AMQP.Blocked:
		unhealthy = append(unhealthy, "broker blocks publishing")
		troubled++
	}

	if targets := dedupe(in.TargetBreakers); len(targets) > 0 && allOpen(targets, in.Breakers) {
		unhealthy = append(unhealthy, "every target breaker is open ("+strings.Join(targets, ", ")+")")
	}

	for _, name := range slices.Sorted(maps.Keys(in.Breakers)) {
		if st := in.Breakers[name].State; st != "closed" {
			degraded = append(degraded, "breaker "+name+" is "+st)
			troubled++
		}
	}

	for _, name := range slices.Sorted(maps.Keys(in.Bulkheads)) {
		b := in.Bulkheads[name]
		bad := false
		if in.DegradedUtilization > 0 && b.Capacity > 0 {
			if u := float64(b.Busy) / float64(b.Capacity); u >= in.DegradedUtilization {
				degraded = append(degraded, fmt.Sprintf("bulkhead %s %s busy (threshold %s)", name, percent(u), percent(in.DegradedUtilization)))
				bad = true
			}
		}
		if n := in.NewRejections[name]; n > 0 {
			degraded = append(degraded, fmt.Sprintf("bulkhead %s rejected %d since the last check", name, n))
			bad = true
		}
		if bad {
			troubled++
		}
	}

	share := float64(troubled) / float64(1+len(in.Breakers)+len(in.Bulkheads))
	switch {
	case len(unhealthy) > 0:
		return Unhealthy, append(unhealthy, degraded...), share
	case len(degraded) > 0:
		return Degraded, degraded, share
	}
	return Healthy, nil, share
}

func allOpen(names []string, breakers map[string]BreakerStatus) bool {
	for _, n := range names {
		if b, ok := breakers[n]; !ok || b.State != "open" {
			return false
		}
	}
	return true
}

func dedupe(names []string) []string {
	out := slices.Clone(names)
	slices.Sort(out)
	return slices.Compact(out)
}

// percent writes a share as a percentage with at most one decimal: 0.9 is
// "90%", 0.855 "85.5%".
func percent(v float64) string {
	return strconv.FormatFloat(math.Round(v*1000)/10, 'f', -1, 64) + "%"
}
