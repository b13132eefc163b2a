package algedonic

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Signal says whether an event is pain (something went wrong) or pleasure
// (something recovered).
type Signal string

// The two signals; each has its own exchange.
const (
	Pain     Signal = "pain"
	Pleasure Signal = "pleasure"
)

func (s Signal) valid() bool { return s == Pain || s == Pleasure }

// Severity ranks an event for people: info, warning or critical.
type Severity string

// Severities, from least to most urgent.
const (
	Info     Severity = "info"
	Warning  Severity = "warning"
	Critical Severity = "critical"
)

func (s Severity) valid() bool { return s == Info || s == Warning || s == Critical }

// Sources and events of the contract. Other values are allowed (the format
// is open to extension); these are the ones the relay raises.
const (
	SourceBreaker  = "breaker"
	SourceBulkhead = "bulkhead"
	SourceQueue    = "queue"
	SourceHealth   = "health"
	SourceAMQP     = "amqp"

	EventOpen         = "open"
	EventClosed       = "closed"
	EventRejected     = "rejected"
	EventDeadLettered = "dead_lettered"
	EventDegraded     = "degraded"
	EventUnhealthy    = "unhealthy"
	EventHealthy      = "healthy"
	EventBlocked      = "blocked"
	EventLost         = "lost"
	EventRestored     = "restored"
)

// TimeLayout is how every time in an event (and in a health report) is
// written: UTC with exactly three fractional digits, so that consumers can
// compare the strings as well as parse them.
const TimeLayout = "2006-01-02T15:04:05.000Z"

// FormatTime writes t in TimeLayout.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// Event is one algedonic signal, as published. The zero value is not a
// valid event: Signal, Source, Name and Event must be set (the
// constructors such as BreakerOpened do that).
type Event struct {
	Signal    Signal   `json:"signal"`
	Source    string   `json:"source"` // breaker, bulkhead, queue, health, amqp
	Name      string   `json:"name"`   // the breaker, pool or queue; "overall" for health, "broker" for amqp
	Event     string   `json:"event"`  // open, closed, rejected, dead_lettered, ...
	Severity  Severity `json:"severity"`
	Intensity float64  `json:"intensity"` // in [0, 1]
	Reason    string   `json:"reason"`
	// Count is how many occurrences the event stands for: 1, or more for a
	// coalesced summary.
	Count    int       `json:"count"`
	Instance string    `json:"instance"`
	At       time.Time `json:"at"`
	// Details carries extra facts. It is shared with every listener and
	// must not be changed after Emit. It is written as {} when nil.
	Details map[string]any `json:"details"`
}

// wireEvent is Event as written: the time as a fixed-layout string.
type wireEvent struct {
	Signal    Signal         `json:"signal"`
	Source    string         `json:"source"`
	Name      string         `json:"name"`
	Event     string         `json:"event"`
	Severity  Severity       `json:"severity"`
	Intensity float64        `json:"intensity"`
	Reason    string         `json:"reason"`
	Count     int            `json:"count"`
	Instance  string         `json:"instance"`
	At        string         `json:"at"`
	Details   map[string]any `json:"details"`
}

// emptyDetails is written for nil Details. It is never handed out, so it
// cannot be changed.
var emptyDetails = map[string]any{}

// MarshalJSON writes the event with "at" in TimeLayout and "details"
// always an object.
func (e Event) MarshalJSON() ([]byte, error) {
	w := wireEvent{
		Signal: e.Signal, Source: e.Source, Name: e.Name, Event: e.Event,
		Severity: e.Severity, Intensity: e.Intensity, Reason: e.Reason,
		Count: e.Count, Instance: e.Instance, At: FormatTime(e.At), Details: e.Details,
	}
	if w.Details == nil {
		w.Details = emptyDetails
	}
	return json.Marshal(w)
}

// Errors of Decode and of events refused by Emit, checked with errors.Is.
var (
	ErrInvalidEvent = errors.New("algedonic: invalid event")
)

// Decode parses and checks one event body. It is strict about what the
// relay guarantees: the signal and severity must be known, intensity in
// [0, 1], count at least 1, source, name and event present, "at" an RFC
// 3339 time. Unknown fields are ignored, so that new fields do not break
// old clients. The time is normalised to UTC with millisecond precision
// (the precision of the wire format); nil details become {}.
func Decode(b []byte) (Event, error) {
	var w struct {
		wireEvent
		At *string `json:"at"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrInvalidEvent, err)
	}
	e := Event{
		Signal: w.Signal, Source: w.Source, Name: w.Name, Event: w.Event,
		Severity: w.Severity, Intensity: w.Intensity, Reason: w.Reason,
		Count: w.Count, Instance: w.Instance, Details: w.Details,
	}
	if w.At == nil {
		return Event{}, fmt.Errorf("%w: missing at", ErrInvalidEvent)
	}
	at, err := time.Parse(time.RFC3339Nano, *w.At)
	if err != nil {
		return Event{}, fmt.Errorf("%w: at: %v", ErrInvalidEvent, err)
	}
	e.At = at.UTC().Truncate(time.Millisecond)
	if y := e.At.Year(); y < 0 || y > 9999 {
		// RFC 3339 has four-digit years; an offset can push a time in
		// year 0 or 9999 out of them, and it could not be written back.
		return Event{}, fmt.Errorf("%w: at %q is outside years 0000-9999 in UTC", ErrInvalidEvent, *w.At)
	}
	if e.Details == nil {
		e.Details = map[string]any{}
	}
	if err := e.validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}

// validate checks what every published event guarantees.
func (e *Event) validate() error {
	switch {
	case !e.Signal.valid():
		return fmt.Errorf("%w: unknown signal %q", ErrInvalidEvent, e.Signal)
	case !e.Severity.valid():
		return fmt.Errorf("%w: unknown severity %q", ErrInvalidEvent, e.Severity)
	case !(e.Intensity >= 0 && e.Intensity <= 1): // also refuses NaN
		return fmt.Errorf("%w: intensity %v outside [0, 1]", ErrInvalidEvent, e.Intensity)
	case e.Count < 1:
		return fmt.Errorf("%w: count %d below 1", ErrInvalidEvent, e.Count)
	case e.Source == "":
		return fmt.Errorf("%w: missing source", ErrInvalidEvent)
	case e.Name == "":
		return fmt.Errorf("%w: missing name", ErrInvalidEvent)
	case e.Event == "":
		return fmt.Errorf("%w: missing event", ErrInvalidEvent)
	}
	return nil
}

// RoutingKey returns "<source>.<name>.<event>", each part passed through
// RoutingWord so the key always has exactly three words.
func (e Event) RoutingKey() string {
	return RoutingWord(e.Source) + "." + RoutingWord(e.Name) + "." + RoutingWord(e.Event)
}

// RoutingWord makes s safe as one word of an AMQP topic routing key: the
// word separator '.', the wildcards '#' and '*', and white space become
// '_'. Breaker and queue names may hold dots ("vsm.tasks.echo"), and a
// key with extra words would escape the bindings consumers write for
// three-word keys.
func RoutingWord(s string) string {
	i := strings.IndexFunc(s, needsEscape)
	if i < 0 {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if c := b[i]; c < utf8.RuneSelf {
			if needsEscape(rune(c)) {
				b[i] = '_'
			}
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if needsEscape(r) {
			// The few multi-byte spaces (U+00A0, U+2028, ...) shrink to
			// one byte.
			b = append(b[:i+1], b[i+size:]...)
			b[i] = '_'
			continue
		}
		i += size - 1
	}
	return string(b)
}

func needsEscape(r rune) bool {
	return r == '.' || r == '#' || r == '*' || unicode.IsSpace(r)
}

// clamp01 bounds an intensity to [0, 1]; NaN, which has no place on the
// scale, becomes 0.
func clamp01(v float64) float64 {
	if math.IsNaN(v) || v < 0 {
		return 0
	}
	if v > 1 {
		return 1
	}
	return v
}
