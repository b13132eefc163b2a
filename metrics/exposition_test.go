package metrics

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The helpers below do what prometheus/testutil's ToFloat64,
// GatherAndCompare and CollectAndCompare do. testutil itself cannot be
// imported yet: it needs github.com/kylelemons/godebug, which go.sum does
// not list. Once it does, these give way to the testutil functions of the
// same names, with no change to the tests' expectations.

// toFloat64 returns the value of the single counter, gauge or untyped
// metric c collects.
func toFloat64(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	close(ch)
	var m dto.Metric
	n := 0
	for metric := range ch {
		n++
		if err := metric.Write(&m); err != nil {
			panic(err)
		}
	}
	if n != 1 {
		panic(fmt.Sprintf("collected %d metrics, want 1", n))
	}
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	panic("collected a metric that is neither counter, gauge nor untyped")
}

// collectAndCompare registers c alone on a pedantic registry and compares
// what it gathers with expected, a text exposition.
func collectAndCompare(c prometheus.Collector, expected string, names ...string) error {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		return fmt.Errorf("registering collector: %w", err)
	}
	return gatherAndCompare(reg, expected, names...)
}

// gatherAndCompare compares what g gathers with expected, a text
// exposition, both restricted to the families named, if any are.
func gatherAndCompare(g prometheus.Gatherer, expected string, names ...string) error {
	got, err := g.Gather()
	if err != nil {
		return fmt.Errorf("gathering: %w", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	parsed, err := parser.TextToMetricFamilies(strings.NewReader(expected))
	if err != nil {
		return fmt.Errorf("parsing expected: %w", err)
	}
	var want []*dto.MetricFamily
	for _, mf := range parsed {
		if mf.Help == nil {
			// The parser leaves an empty HELP unset; a registry never does.
			mf.Help = new("")
		}
		slices.SortFunc(mf.Metric, func(a, b *dto.Metric) int {
			return cmp.Compare(labelKey(a), labelKey(b))
		})
		want = append(want, mf)
	}
	slices.SortFunc(want, func(a, b *dto.MetricFamily) int { return cmp.Compare(a.GetName(), b.GetName()) })

	gotText, err := encodeText(only(got, names))
	if err != nil {
		return err
	}
	wantText, err := encodeText(only(want, names))
	if err != nil {
		return err
	}
	if gotText != wantText {
		return fmt.Errorf("exposition differs\n--- got:\n%s--- want:\n%s", gotText, wantText)
	}
	return nil
}

func labelKey(m *dto.Metric) string {
	var b strings.Builder
	for _, lp := range m.GetLabel() {
		b.WriteString(lp.GetName())
		b.WriteByte(0)
		b.WriteString(lp.GetValue())
		b.WriteByte(0)
	}
	return b.String()
}

func only(mfs []*dto.MetricFamily, names []string) []*dto.MetricFamily {
	if len(names) == 0 {
		return mfs
	}
	var out []*dto.MetricFamily
	for _, mf := range mfs {
		if slices.Contains(names, mf.GetName()) {
			out = append(out, mf)
		}
	}
	return out
}

func encodeText(mfs []*dto.MetricFamily) (string, error) {
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain).WithEscapingScheme(model.NoEscaping))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return "", fmt.Errorf("encoding %s: %w", mf.GetName(), err)
		}
	}
	return buf.String(), nil
}
