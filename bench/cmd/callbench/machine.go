package main

import "github.com/vsm-relay/relay/bench/internal/machine"

// Machine is what the figures were measured on.
type Machine = machine.Machine

var readMachine = machine.Read
