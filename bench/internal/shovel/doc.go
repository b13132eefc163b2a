// Package shovel runs RabbitMQ's shovel plugin as the yardstick of the
// outbound path: a dynamic shovel (a runtime parameter set with
// rabbitmqctl) that moves a queue's messages to an exchange, acking each
// source message only after the destination confirmed it (ack-mode
// on-confirm), as the relay does.
//
// Definition is pure and tested; the rest shells out to rabbitmqctl and
// rabbitmq-plugins, which need the rights of the broker's operator
// (root, or the rabbitmq user).
package shovel
