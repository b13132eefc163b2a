package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/vsm-relay/relay/algedonic"
)

// Version is the version of the message format this package writes. A
// message of another version is refused by Decode: a relay that does not
// understand its peers must decide alone rather than misread them.
const Version = 1

// DefaultExchange is the topic exchange the relay's fleet messages go
// through; each message's routing key is RoutingKey.
const DefaultExchange = "vsm.relay.fleet"

// Kind says what a Message reports.
type Kind string

// The kinds of message.
const (
	// KindFailures: Count failures of the breaker, seen by Instance up to
	// At; the last one's error was Reason.
	KindFailures Kind = "failures"
	// KindOpen: Instance's breaker opened at At, for Reason.
	KindOpen Kind = "open"
	// KindClosed: Instance's breaker closed at At after its probes
	// succeeded (or an operator closed it).
	KindClosed Kind = "closed"
	// KindHalfOpen: Instance's breaker went half_open. The coordinator
	// does not send it (each relay probes on its own reset_timeout) and
	// takes no action on it; it is understood so that a peer that sends it
	// is not refused.
	KindHalfOpen Kind = "half_open"
)

func (k Kind) valid() bool {
	switch k {
	case KindFailures, KindOpen, KindClosed, KindHalfOpen:
		return true
	}
	return false
}

// Message is what relays sharing a breaker tell each other, as JSON:
//
//	{"v":1,"instance":"relay-7f3a","breaker":"llm_api","kind":"failures",
//	 "count":3,"reason":"HTTP 503","at":"2026-11-29T14:00:00.123Z","origin":"relay-7f3a"}
//
// At is the sender's clock. Origin is the instance whose breaker the
// message is about first-hand; a relay never passes on what a peer
// caused, so it is the sender itself.
type Message struct {
	Version  int       `json:"v"`
	Instance string    `json:"instance"`
	Breaker  string    `json:"breaker"`
	Kind     Kind      `json:"kind"`
	Count    int       `json:"count,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	At       time.Time `json:"at"`
	Origin   string    `json:"origin,omitempty"`
}

// ErrInvalidMessage is wrapped by every error of Decode.
var ErrInvalidMessage = errors.New("fleet: invalid message")

// Marshal writes m as JSON.
func (m Message) Marshal() ([]byte, error) { return json.Marshal(m) }

// RoutingKey is "breaker.<name>", the name made safe as one word of a
// topic routing key.
func (m Message) RoutingKey() string { return "breaker." + algedonic.RoutingWord(m.Breaker) }

// Decode parses and checks one message body: the version must be
// Version, the kind known, instance, breaker and at present, and a
// failures message must count at least one. Unknown fields are ignored.
func Decode(b []byte) (Message, error) {
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	switch {
	case m.Version != Version:
		return Message{}, fmt.Errorf("%w: version %d, want %d", ErrInvalidMessage, m.Version, Version)
	case !m.Kind.valid():
		return Message{}, fmt.Errorf("%w: unknown kind %q", ErrInvalidMessage, m.Kind)
	case m.Instance == "":
		return Message{}, fmt.Errorf("%w: missing instance", ErrInvalidMessage)
	case m.Breaker == "":
		return Message{}, fmt.Errorf("%w: missing breaker", ErrInvalidMessage)
	case m.At.IsZero():
		return Message{}, fmt.Errorf("%w: missing at", ErrInvalidMessage)
	case m.Kind == KindFailures && m.Count < 1:
		return Message{}, fmt.Errorf("%w: failures message counts %d", ErrInvalidMessage, m.Count)
	}
	return m, nil
}
