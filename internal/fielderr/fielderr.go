// Package fielderr carries configuration problems that name the key they
// are about, so that every layer can add its own prefix and the user sees
// "breakers.llm_api.failure_threshold: must be at least 1, got 0".
package fielderr

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Error is one problem with one configuration key.
type Error struct {
	Key string // dotted key path, e.g. "failure_threshold" or "targets.echo.url"
	Msg string // what is wrong, in words
}

func (e *Error) Error() string {
	if e.Key == "" {
		return e.Msg
	}
	return e.Key + ": " + e.Msg
}

// List collects problems. The zero value is ready to use.
type List struct {
	errs []*Error
}

// Addf records a problem with key.
func (l *List) Addf(key, format string, args ...any) {
	l.errs = append(l.errs, &Error{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// Merge adds every problem found in err under prefix (joined with a dot).
// Errors that are not *Error are kept with prefix as their key.
func (l *List) Merge(prefix string, err error) {
	for _, e := range Flatten(err) {
		l.errs = append(l.errs, &Error{Key: join(prefix, e.Key), Msg: e.Msg})
	}
}

// Err returns nil when nothing was recorded, otherwise an error that joins
// every problem (sorted by key, so output is stable) and unwraps to each.
func (l *List) Err() error {
	if len(l.errs) == 0 {
		return nil
	}
	errs := make([]*Error, len(l.errs))
	copy(errs, l.errs)
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Key < errs[j].Key })
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return errors.Join(out...)
}

// Flatten returns every *Error inside err, walking errors.Join trees.
// A non-nil error that holds none is returned as one Error with no key.
func Flatten(err error) []*Error {
	if err == nil {
		return nil
	}
	var out []*Error
	var walk func(error)
	walk = func(e error) {
		if fe, ok := e.(*Error); ok {
			out = append(out, fe)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, inner := range j.Unwrap() {
				walk(inner)
			}
			return
		}
		out = append(out, &Error{Msg: e.Error()})
	}
	walk(err)
	return out
}

// Lines renders err as one "key: problem" per line.
func Lines(err error) []string {
	var lines []string
	for _, e := range Flatten(err) {
		lines = append(lines, e.Error())
	}
	return lines
}

func join(prefix, key string) string {
	switch {
	case prefix == "":
		return key
	case key == "":
		return prefix
	default:
		return strings.TrimSuffix(prefix, ".") + "." + key
	}
}
