// Command upstream is a tiny HTTP server for the examples and the quickstart:
// it answers /status/<code> with that status (like httpbin) and echoes the
// request line and the headers a proxy added for every other path.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"strconv"
	"strings"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:8080", "address to listen on")
	flag.Parse()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if rest, ok := strings.CutPrefix(r.URL.Path, "/status/"); ok {
			if code, err := strconv.Atoi(rest); err == nil && code >= 200 && code <= 599 {
				w.WriteHeader(code)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"method":  r.Method,
			"path":    r.URL.RequestURI(),
			"host":    r.Host,
			"headers": r.Header,
		})
	})
	log.Printf("upstream listening on %s", *addr)
	log.Fatal(http.ListenAndServe(*addr, nil))
}
