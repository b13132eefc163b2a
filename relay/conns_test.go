package relay

import (
	"context"
	"fmt"
	"testing"

	"github.com/vsm-relay/relay/broker"
)

func TestConfirmOutcomes(t *testing.T) {
	cases := map[error]string{
		nil:                                   "ack",
		&broker.ReturnedError{ReplyCode: 312}: "returned",
		broker.ErrNacked:                      "nack",
		broker.ErrLost:                        "lost",
		context.DeadlineExceeded:              "lost",
		fmt.Errorf("wrapped: %w", broker.ErrNacked): "nack",
	}
	for err, want := range cases {
		if got := confirmOutcome(err); got != want {
			t.Errorf("confirmOutcome(%v) = %q, want %q", err, got, want)
		}
	}
}
