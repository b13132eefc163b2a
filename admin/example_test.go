package admin_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/vsm-relay/relay/admin"
)

// An operator forces a breaker open with the token; a caller without it
// is told to authenticate.
func ExampleNew() {
	h, err := admin.New(admin.Options{
		Token:    "s3cret",
		Controls: newFake(),
		Now:      func() time.Time { return time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC) },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/", h)

	req := httptest.NewRequest(http.MethodPost, "/admin/breakers/llm_api/open", nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	fmt.Print(rec.Code, " ", rec.Body)

	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/admin/reload", nil))
	fmt.Print(rec.Code, " ", rec.Body)
	// Output:
	// 200 {"action":"open","at":"2026-11-29T14:00:00.000Z","breaker":"llm_api","by":"operator","state":"open"}
	// 401 {"error":"missing Authorization: Bearer <token>"}
}
