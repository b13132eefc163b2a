package workload

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// ErrBadID reports a correlation id that EncodeID did not make.
var ErrBadID = errors.New("workload: not a task id")

// EncodeID makes a task's correlation id from its sequence number and the
// offset from the run's start at which it was published. Carrying the
// send time in the id (which the relay copies to the reply) keeps the
// driver free of a table of outstanding tasks.
func EncodeID(seq uint64, sent time.Duration) string {
	return strconv.FormatUint(seq, 36) + "." + strconv.FormatInt(int64(sent), 36)
}

// DecodeID returns what EncodeID put into id.
func DecodeID(id string) (seq uint64, sent time.Duration, err error) {
	s, t, ok := strings.Cut(id, ".")
	if !ok {
		return 0, 0, ErrBadID
	}
	seq, err1 := strconv.ParseUint(s, 36, 64)
	ns, err2 := strconv.ParseInt(t, 36, 64)
	if err1 != nil || err2 != nil || ns < 0 {
		return 0, 0, ErrBadID
	}
	return seq, time.Duration(ns), nil
}
