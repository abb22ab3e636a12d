package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestClient(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			if r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("Content-Type") != "application/json" {
				http.Error(w, "missing headers", http.StatusBadRequest)
				return
			}
			var v map[string]int
			json.NewDecoder(r.Body).Decode(&v)
			writeJSON(w, http.StatusOK, map[string]int{"n": v["n"] + 1})
		case "/denied":
			DenyJSON(w, r, http.StatusForbidden, "forbidden: viewer")
		default:
			http.Error(w, "no such page", http.StatusNotFound)
		}
	}))
	defer srv.Close()
	c := &Client{Base: srv.URL + "/", Token: "tok"}
	ctx := context.Background()

	var out struct{ N int }
	if err := c.Do(ctx, http.MethodPost, "/echo", map[string]int{"n": 41}, &out); err != nil || out.N != 42 {
		t.Fatalf("echo: %v, n = %d", err, out.N)
	}
	if err := c.Do(ctx, http.MethodGet, "/denied", nil, nil); err == nil || !strings.Contains(err.Error(), "GET /denied: 403 Forbidden: forbidden: viewer") {
		t.Errorf("JSON error: got %v", err)
	}
	if err := c.Do(ctx, http.MethodGet, "/other", nil, nil); err == nil || !strings.Contains(err.Error(), "404 Not Found: no such page") {
		t.Errorf("text error: got %v", err)
	}
}
