// Package admin serves the operator's endpoints of a running relay:
//
//	POST /admin/breakers/{name}/open    force a breaker open until closed again
//	POST /admin/breakers/{name}/close   close it, clear its counts, lift a forced open
//	POST /admin/queues/{queue}/pause    hold a queue's intake
//	POST /admin/queues/{queue}/resume   release it
//	POST /admin/reload                  read the configuration again
//
// # Access
//
// The endpoints exist only when a token is configured: without one every
// path under /admin/ answers 404, as if there were nothing there. With a
// token, a request must carry "Authorization: Bearer <token>": without the
// header (or with another scheme) it answers 401 with a WWW-Authenticate
// challenge, with a wrong token 403. Tokens are compared as SHA-256 digests
// in constant time, so neither their content nor their length shows in
// the time an answer takes. Authorization is checked before the path, so
// a caller without the token learns nothing of which routes exist.
//
// # Answers
//
// Every answer is JSON. An action answers 200 with what was done:
//
//	{"breaker":"llm_api","action":"open","state":"open","by":"operator","at":"2026-11-29T14:00:00.123Z"}
//
// A name the relay does not know (Controls returns ErrNotFound) answers
// 404, a reload of an invalid configuration 422 with every problem, any
// other failure 500; each with an "error" member. A method other than POST
// answers 405 with an Allow header.
//
// # Effects
//
// The handler does not change the relay itself: it calls Controls, which
// the relay implements, and the relay publishes the state change as its
// usual event with details.by = "operator". The handler logs every action,
// refused ones included, with who asked (remote address and a fingerprint
// of the token used), what and when.
package admin
