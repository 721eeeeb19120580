// SPDX-License-Identifier: MIT

package tcppath

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// testProxy is an HTTP proxy that serves CONNECT only, built on net/http:
// it checks Basic credentials if it has any, refuses one destination
// with 403, and splices the hijacked client connection to the
// destination.
type testProxy struct {
	srv        *httptest.Server
	user, pass string // required credentials; "" for none
	forbidden  string // a destination refused with 403

	mu    sync.Mutex
	seen  []string // "CONNECT <host:port> <Proxy-Authorization>"
	conns []net.Conn
}

func newTestProxy(t *testing.T, user, pass, forbidden string) *testProxy {
	p := &testProxy{user: user, pass: pass, forbidden: forbidden}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serveHTTP))
	t.Cleanup(func() {
		p.srv.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	return p
}

// url returns the proxy's URL with the given user information (nil for
// none).
func (p *testProxy) url(user *url.Userinfo) *url.URL {
	u, _ := url.Parse(p.srv.URL)
	u.User = user
	return u
}

func (p *testProxy) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

func (p *testProxy) serveHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.seen = append(p.seen, r.Method+" "+r.Host+" "+r.Header.Get("Proxy-Authorization"))
	p.mu.Unlock()
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	if p.user != "" {
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte(p.user+":"+p.pass))
		if r.Header.Get("Proxy-Authorization") != want {
			w.Header().Set("Proxy-Authenticate", `Basic realm="test"`)
			http.Error(w, "who are you", http.StatusProxyAuthRequired)
			return
		}
	}
	if r.Host == p.forbidden {
		http.Error(w, "not there", http.StatusForbidden)
		return
	}
	dst, err := net.Dial("tcp", r.Host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	src, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		dst.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, src, dst)
	p.mu.Unlock()
	if _, err := io.WriteString(src, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		src.Close()
		dst.Close()
		return
	}
	go func() {
		io.Copy(dst, brw) // brw.Reader first: it may hold bytes read past the request
		dst.Close()
	}()
	go func() {
		io.Copy(src, dst)
		src.Close()
	}()
}

func TestProxy(t *testing.T) {
	tests := []struct {
		name       string
		user, pass string
	}{
		{"no authentication", "", ""},
		{"basic authentication", "site", "s3cret:with colon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			site := newIdentity(t)
			h := newHub(t, ServerConfig{}, site.pub)
			p := newTestProxy(t, tt.user, tt.pass, "")
			var user *url.Userinfo
			if tt.user != "" {
				user = url.UserPassword(tt.user, tt.pass)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := Dial(ctx, h.LocalAddr().String(), ClientConfig{PrivateKey: site.priv, PeerKey: h.id.pub, Proxy: p.url(user)})
			if err != nil {
				t.Fatalf("Dial via proxy: %v", err)
			}
			defer c.Close()
			from := h.register(t, c)
			writeTo(t, h, []byte{0xc5, 5}, from)
			if got, _ := readFrom(t, c, 5*time.Second); !bytes.Equal(got, []byte{0xc5, 5}) {
				t.Errorf("site read % x, want c5 05", got)
			}
			// The connection is the proxy's, at both ends.
			if got, want := c.RemoteAddr().(Addr).TCP().String(), p.srv.Listener.Addr().String(); got != want {
				t.Errorf("site's RemoteAddr TCP = %s, want the proxy's %s", got, want)
			}
			want := "CONNECT " + h.LocalAddr().String() + " "
			if tt.user != "" {
				want += "Basic " + base64.StdEncoding.EncodeToString([]byte(tt.user+":"+tt.pass))
			}
			if got := p.requests(); len(got) != 1 || got[0] != want {
				t.Errorf("proxy saw %q, want [%q]", got, want)
			}
		})
	}
}

func TestProxyRefused(t *testing.T) {
	site := newIdentity(t)
	h := newHub(t, ServerConfig{}, site.pub)
	tests := []struct {
		name       string
		user       *url.Userinfo
		forbidden  string
		wantStatus int
		wantText   string
	}{
		{"no credentials", nil, "", http.StatusProxyAuthRequired, "407 Proxy Authentication Required"},
		{"wrong password", url.UserPassword("site", "guess"), "", http.StatusProxyAuthRequired, "407 Proxy Authentication Required"},
		{"forbidden destination", url.UserPassword("site", "pw"), h.LocalAddr().String(), http.StatusForbidden, "403 Forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestProxy(t, "site", "pw", tt.forbidden)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := Dial(ctx, h.LocalAddr().String(), ClientConfig{PrivateKey: site.priv, PeerKey: h.id.pub, Proxy: p.url(tt.user)})
			if err == nil {
				c.Close()
				t.Fatal("Dial via a refusing proxy succeeded")
			}
			var pe *ProxyError
			if !errors.As(err, &pe) || pe.StatusCode != tt.wantStatus {
				t.Fatalf("Dial error = %v, want a *ProxyError with status %d", err, tt.wantStatus)
			}
			if !strings.Contains(err.Error(), tt.wantText) || !strings.Contains(err.Error(), "via proxy") {
				t.Errorf("Dial error = %q, want it to name the proxy and %q", err, tt.wantText)
			}
			if tt.user != nil {
				if pass, _ := tt.user.Password(); strings.Contains(err.Error(), pass) {
					t.Errorf("Dial error %q shows the proxy password", err)
				}
			}
		})
	}
	if st := h.Stats(); st.Accepted+st.HandshakeErrors+st.Evicted != 0 {
		t.Errorf("hub Stats() = %+v, want no connection at all", st)
	}
}

// TestProxySilent shows that ctx bounds the CONNECT exchange with a proxy
// that accepts the connection and never answers.
func TestProxySilent(t *testing.T) {
	site := newIdentity(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	proxy := &url.URL{Scheme: "http", Host: l.Addr().String()}
	start := time.Now()
	_, err = Dial(ctx, "hub.example:443", ClientConfig{PrivateKey: site.priv, PeerKey: site.pub, Proxy: proxy})
	if err == nil {
		t.Fatal("Dial via a silent proxy succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Dial returned after %v, want about 200ms", d)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial error = %v, want one wrapping context.DeadlineExceeded", err)
	}
}
