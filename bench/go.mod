module github.com/vsm-relay/relay/bench

go 1.26.0

require (
	github.com/failsafe-go/failsafe-go v0.9.8
	github.com/rabbitmq/amqp091-go v1.16.0
	github.com/sony/gobreaker/v2 v2.4.0
	github.com/vsm-relay/relay v0.0.0
)

require (
	github.com/bits-and-blooms/bitset v1.24.4 // indirect
	golang.org/x/time v0.16.0 // indirect
)

replace github.com/vsm-relay/relay => ../
