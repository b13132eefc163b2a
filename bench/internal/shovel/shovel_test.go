package shovel

import (
	"fmt"
	"strings"
	"testing"
)

func TestDefinition(t *testing.T) {
	s := Spec{
		SrcURI: "amqp://guest:guest@127.0.0.1:5672", SrcQueue: "rb.src",
		DestURI: "amqp://guest:guest@127.0.0.1:5672", DestExchange: "rb.dest", DestKey: "moved",
	}
	got, err := s.Definition()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"src-protocol":"amqp091","src-uri":"amqp://guest:guest@127.0.0.1:5672","src-queue":"rb.src","src-prefetch-count":1000,"src-delete-after":"never","dest-protocol":"amqp091","dest-uri":"amqp://guest:guest@127.0.0.1:5672","dest-exchange":"rb.dest","dest-exchange-key":"moved","dest-add-forward-headers":false,"ack-mode":"on-confirm","reconnect-delay":1}`
	if string(got) != want {
		t.Errorf("Definition:\n%s\nwant\n%s", got, want)
	}
	s.Prefetch = 50
	got, _ = s.Definition()
	if want := `"src-prefetch-count":50,`; !strings.Contains(string(got), want) {
		t.Errorf("Definition with prefetch 50 lacks %s: %s", want, got)
	}
	if _, err := (Spec{SrcQueue: "q"}).Definition(); err == nil {
		t.Error("Definition without URIs: no error")
	}
}

func TestEnabled(t *testing.T) {
	tests := []struct {
		out  string
		want bool
	}{
		{"rabbitmq_management\nrabbitmq_shovel\n", true},
		{"rabbitmq_shovel_management\n", false},
		{"", false},
		{"Listing plugins with pattern \".*\" ...\n rabbitmq_shovel \n", true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.out), func(t *testing.T) {
			if got := Enabled(tt.out); got != tt.want {
				t.Errorf("Enabled = %v, want %v", got, tt.want)
			}
		})
	}
}

func ExampleSpec_Definition() {
	def, _ := Spec{SrcURI: "amqp://127.0.0.1", SrcQueue: "src", DestURI: "amqp://127.0.0.1", DestExchange: "x", DestKey: "k", Prefetch: 1000}.Definition()
	fmt.Println(string(def))
	// Output: {"src-protocol":"amqp091","src-uri":"amqp://127.0.0.1","src-queue":"src","src-prefetch-count":1000,"src-delete-after":"never","dest-protocol":"amqp091","dest-uri":"amqp://127.0.0.1","dest-exchange":"x","dest-exchange-key":"k","dest-add-forward-headers":false,"ack-mode":"on-confirm","reconnect-delay":1}
}
