package algedonic

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// windowKey is what coalescing counts by.
type windowKey struct {
	source, name, event string
}

// window is the coalescing state of one key: the window ends at end; the
// occurrences counted since it began are to be sent as one summary then.
type window struct {
	end     time.Time
	counted int
	last    Event   // the latest counted occurrence, the summary's template
	maxInt  float64 // the highest intensity counted
}

func (w *window) absorb(ev Event) {
	if w.counted == 0 || ev.Intensity > w.maxInt {
		w.maxInt = ev.Intensity
	}
	w.counted += ev.Count
	w.last = ev
}

// summarise returns the summary of what w counted and starts a new window
// at now.
func (w *window) summarise(now time.Time, d time.Duration) Event {
	ev := w.last
	ev.Count, ev.At, ev.Intensity = w.counted, now, math.Min(1, w.maxInt)
	w.counted, w.last, w.maxInt = 0, Event{}, 0
	w.end = now.Add(d)
	return ev
}

// coalesce decides, with e.mu held, what Emit sends for ev: nothing (ev
// was counted into an open window), ev itself, or first a summary of a
// window that ended before the last tick saw it. It appends the events to
// enqueue, in order, to out, and reports whether ev was counted into a
// window.
func (e *Emitter) coalesce(ev Event, now time.Time, out []Event) ([]Event, bool) {
	if _, ok := e.coalesced[Kind{Source: ev.Source, Event: ev.Event}]; !ok {
		return append(out, ev), false
	}
	k := windowKey{ev.Source, ev.Name, ev.Event}
	w := e.windows[k]
	switch {
	case w == nil:
		e.windows[k] = &window{end: now.Add(e.cfg.Coalesce)}
		return append(out, ev), false
	case now.Before(w.end):
		w.absorb(ev)
		return out, true
	case w.counted > 0:
		// The window's end passed unseen: its summary goes first and
		// opens a new window, which ev is the first count of.
		out = append(out, w.summarise(now, e.cfg.Coalesce))
		w.absorb(ev)
		return out, true
	default:
		w.end = now.Add(e.cfg.Coalesce)
		return append(out, ev), false
	}
}

// closeWindows, with e.mu held, summarises every window that ended by now
// (or every window with counts, when all is set) and forgets the windows
// that ended quiet. The summaries come out sorted by key, so that the
// order does not depend on map iteration.
func (e *Emitter) closeWindows(now time.Time, all bool) []Event {
	var out []Event
	for k, w := range e.windows {
		if !all && now.Before(w.end) {
			continue
		}
		if w.counted == 0 {
			if !now.Before(w.end) {
				delete(e.windows, k)
			}
			continue
		}
		out = append(out, w.summarise(now, e.cfg.Coalesce))
	}
	slices.SortFunc(out, func(a, b Event) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Event, b.Event))
	})
	return out
}
