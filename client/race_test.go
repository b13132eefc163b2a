//go:build race

package client

// raceEnabled: the race detector changes what escapes, and so what
// allocation counts can assert.
const raceEnabled = true
