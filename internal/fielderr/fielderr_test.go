package fielderr

import (
	"errors"
	"reflect"
	"testing"
)

func TestListMergeAndLines(t *testing.T) {
	var inner List
	inner.Addf("failure_threshold", "must be at least 1, got %d", 0)
	inner.Addf("timeout", "must be positive")

	var outer List
	outer.Addf("instance", "too long")
	outer.Merge("breakers.llm_api", inner.Err())
	outer.Merge("amqp.url", errors.New("not a URL"))

	got := Lines(outer.Err())
	want := []string{
		"amqp.url: not a URL",
		"breakers.llm_api.failure_threshold: must be at least 1, got 0",
		"breakers.llm_api.timeout: must be positive",
		"instance: too long",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Lines() =\n%q\nwant\n%q", got, want)
	}
}

func TestEmptyListIsNil(t *testing.T) {
	var l List
	if l.Err() != nil {
		t.Fatal("empty list must give a nil error")
	}
	if Flatten(nil) != nil {
		t.Fatal("Flatten(nil) must be nil")
	}
}
