package algedonic

import (
	"strings"
)

// Sources and names of the events an operator's actions and the
// configuration raise.
const (
	SourceConfig = "config"
	NameReload   = "reload"
	// ByOperator is the details.by of a change an operator asked for.
	ByOperator = "operator"
)

// ByOperatorDetails marks ev as caused by an operator (details.by).
func ByOperatorDetails(ev Event) Event {
	d := make(map[string]any, len(ev.Details)+1)
	for k, v := range ev.Details {
		d[k] = v
	}
	d["by"] = ByOperator
	ev.Details = d
	return ev
}

// QueuePaused is the pain of a queue whose intake an operator held: its
// tasks wait in the broker.
//
//	pain, warning, intensity 0.4
func QueuePaused(queue string) Event {
	return ByOperatorDetails(Event{
		Signal: Pain, Source: SourceQueue, Name: queue, Event: "paused",
		Severity: Warning, Intensity: 0.4, Reason: "intake paused by an operator; tasks wait in the broker",
	})
}

// QueueResumed is the pleasure of a paused queue taking tasks again.
//
//	pleasure, info, intensity 0.4
func QueueResumed(queue string) Event {
	return ByOperatorDetails(Event{
		Signal: Pleasure, Source: SourceQueue, Name: queue, Event: "resumed",
		Severity: Info, Intensity: 0.4, Reason: "intake resumed by an operator",
	})
}

// ReloadRefused is the pain of a configuration reload refused whole for
// problems: the running configuration stays.
//
//	pain, warning, intensity 0.5
func ReloadRefused(problems []string) Event {
	return Event{
		Signal: Pain, Source: SourceConfig, Name: NameReload, Event: "refused",
		Severity: Warning, Intensity: 0.5,
		Reason:  "configuration reload refused; the running configuration stays: " + strings.Join(problems, "; "),
		Details: map[string]any{"problems": append([]string{}, problems...)},
	}
}

// Reloaded is the pleasure of a configuration reload applied; changes
// says what changed.
//
//	pleasure, info, intensity 0.3
func Reloaded(changes []string) Event {
	reason := "configuration reloaded"
	if len(changes) > 0 {
		reason += ": " + strings.Join(changes, "; ")
	} else {
		reason += "; nothing changed"
	}
	return Event{
		Signal: Pleasure, Source: SourceConfig, Name: NameReload, Event: "applied",
		Severity: Info, Intensity: 0.3, Reason: reason,
		Details: map[string]any{"changes": append([]string{}, changes...)},
	}
}
