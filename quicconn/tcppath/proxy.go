// SPDX-License-Identifier: MIT

package tcppath

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
)

// ProxyError is the error, wrapped by Dial's, for an HTTP proxy that
// answered CONNECT with anything but 2xx: 407 (the proxy wants, or did
// not accept, credentials), 403 (the proxy forbids the destination or
// port), 502 (the proxy could not reach the hub).
type ProxyError struct {
	StatusCode int    // the HTTP status code, for example 407
	Status     string // the status line's text, for example "407 Proxy Authentication Required"
}

// Error implements error.
func (e *ProxyError) Error() string {
	return fmt.Sprintf("proxy refused CONNECT: %s", e.Status)
}

// proxyAddr returns the "host:port" to dial for proxy u; the port is 80
// when u has none, as in net/http.
func proxyAddr(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// connect asks the HTTP proxy at the other end of conn for a tunnel to
// addr, the way net/http's Transport does for an https URL through a
// proxy: a CONNECT request written by net/http, its answer read by
// http.ReadResponse. The caller bounds it with conn's deadline.
func connect(conn net.Conn, proxy *url.URL, addr string) error {
	req := &http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Opaque: addr},
		Host:   addr,
		Header: make(http.Header),
	}
	req.Header.Set("User-Agent", "godwit")
	if u := proxy.User; u != nil {
		pass, _ := u.Password()
		cred := base64.StdEncoding.EncodeToString([]byte(u.Username() + ":" + pass))
		req.Header.Set("Proxy-Authorization", "Basic "+cred)
	}
	if err := req.Write(conn); err != nil {
		return fmt.Errorf("proxy CONNECT: %w", err)
	}
	// The reader is dropped afterwards, with whatever it buffered beyond
	// the answer: nothing, as the hub's TLS speaks only after the
	// ClientHello. A proxy that sends more has broken the stream.
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return fmt.Errorf("proxy CONNECT: %w", err)
	}
	// The body is left unread: for 2xx there is none, and for anything
	// else the connection is closed (reading a body without a length
	// would wait for the proxy to close it).
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &ProxyError{StatusCode: resp.StatusCode, Status: resp.Status}
	}
	if n := br.Buffered(); n > 0 {
		return fmt.Errorf("proxy CONNECT: %d bytes after the %s answer, before TLS", n, resp.Status)
	}
	return nil
}
