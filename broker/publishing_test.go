package broker

import (
	"reflect"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Every property a Publishing has and a Delivery carries comes across:
// a field added to one later and not copied fails here by name.
func TestPublishingOfCopiesEveryProperty(t *testing.T) {
	d := &amqp.Delivery{
		Headers: amqp.Table{"old": 1}, ContentType: "text/plain", ContentEncoding: "gzip",
		DeliveryMode: amqp.Persistent, Priority: 7, CorrelationId: "corr", ReplyTo: "reply",
		Expiration: "60000", MessageId: "id", Timestamp: time.Unix(1700000000, 0), Type: "task",
		UserId: "guest", AppId: "agent", Body: []byte("body"),
	}
	h := amqp.Table{"new": 2}
	p := PublishingOf(d, h)
	if !reflect.DeepEqual(p.Headers, h) {
		t.Errorf("Headers = %v, want the ones given", p.Headers)
	}
	pv, dv := reflect.ValueOf(p), reflect.ValueOf(*d)
	for i := range pv.NumField() {
		name := pv.Type().Field(i).Name
		if name == "Headers" {
			continue
		}
		df := dv.FieldByName(name)
		if !df.IsValid() {
			t.Errorf("Publishing.%s has no Delivery field to come from", name)
			continue
		}
		if !reflect.DeepEqual(pv.Field(i).Interface(), df.Interface()) {
			t.Errorf("%s = %v, want %v", name, pv.Field(i).Interface(), df.Interface())
		}
		if pv.Field(i).IsZero() {
			t.Errorf("%s is zero: the test's delivery must set every property", name)
		}
	}
}
