package breaker

// Reasons of the transitions an operator's calls cause, so that listeners
// can tell them from the breaker's own.
const (
	// ReasonForcedOpen is the Reason of the transition ForceOpen causes.
	ReasonForcedOpen = "forced open"
	// ReasonReset is the Reason of the transition Reset causes.
	ReasonReset = "reset manually"
)
