// SPDX-License-Identifier: MIT

package quicconn

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// snmp is /proc/net/snmp of a Linux 6.x VM, abridged, with RcvbufErrors 17.
const snmp = `Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos InDiscards InDelivers OutRequests OutDiscards OutNoRoutes ReasmTimeout ReasmReqds ReasmOKs ReasmFails FragOKs FragFails FragCreates OutTransmits
Ip: 1 64 183393 0 0 0 0 0 183381 170262 0 0 0 0 0 0 0 0 0 170262
Icmp: InMsgs InErrors InCsumErrors InDestUnreachs InTimeExcds InParmProbs InSrcQuenchs InRedirects InEchos InEchoReps InTimestamps InTimestampReps InAddrMasks InAddrMaskReps OutMsgs OutErrors OutRateLimitGlobal OutRateLimitHost OutDestUnreachs OutTimeExcds OutParmProbs OutSrcQuenchs OutRedirects OutEchos OutEchoReps OutTimestamps OutTimestampReps OutAddrMasks OutAddrMaskReps
Icmp: 24 0 0 24 0 0 0 0 0 0 0 0 0 0 24 0 0 0 24 0 0 0 0 0 0 0 0 0 0
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 3011 24 17 3039 17 0 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 99 0 0 0 0
`

// snmp6 is /proc/net/snmp6, abridged, with Udp6RcvbufErrors 5.
const snmp6 = `Ip6InReceives                   	12
Udp6InDatagrams                 	0
Udp6NoPorts                     	0
Udp6InErrors                    	5
Udp6OutDatagrams                	0
Udp6RcvbufErrors                	5
Udp6SndbufErrors                	0
UdpLite6RcvbufErrors            	77
`

// parseCase is an input of a /proc/net parser and the value it holds, or a
// part of the error ("" for success).
type parseCase struct {
	name, in string
	want     uint64
	err      string
}

// testParser runs parse, called name, on every case; its errors must start
// with errPrefix.
func testParser(t *testing.T, name string, parse func([]byte) (uint64, error), errPrefix string, tests []parseCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parse([]byte(tt.in))
			switch {
			case tt.err == "" && (err != nil || got != tt.want):
				t.Errorf("%s = %d, %v; want %d, nil", name, got, err, tt.want)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("%s = %d, %v; want an error containing %q", name, got, err, tt.err)
			case err != nil && !strings.HasPrefix(err.Error(), errPrefix):
				t.Errorf("error %q lacks the %s prefix", err, strings.TrimSuffix(errPrefix, ": "))
			}
		})
	}
}

func TestParseSNMP(t *testing.T) {
	testParser(t, "parseSNMP", parseSNMP, "quicconn: /proc/net/snmp: ", []parseCase{
		{"real", snmp, 17, ""},
		{"large", "Udp: RcvbufErrors\nUdp: 18446744073709551615\n", 1<<64 - 1, ""},
		{"UdpLite first", "UdpLite: RcvbufErrors\nUdpLite: 9\nUdp: InDatagrams RcvbufErrors\nUdp: 1 2\n", 2, ""},
		{"empty", "", 0, "no Udp values"},
		{"header only", "Udp: InDatagrams RcvbufErrors\n", 0, "no Udp values"},
		{"no RcvbufErrors", "Udp: InDatagrams NoPorts\nUdp: 1 2\n", 0, "Udp has no RcvbufErrors"},
		{"short values", "Udp: InDatagrams RcvbufErrors\nUdp: 1\n", 0, "Udp has 3 names but 2 values"},
		{"not a number", "Udp: InDatagrams RcvbufErrors\nUdp: 1 x\n", 0, `Udp RcvbufErrors: strconv.ParseUint: parsing "x"`},
		{"negative", "Udp: RcvbufErrors\nUdp: -1\n", 0, "invalid syntax"},
		{"overflow", "Udp: RcvbufErrors\nUdp: 18446744073709551616\n", 0, "value out of range"},
	})
}

func TestParseSNMP6(t *testing.T) {
	testParser(t, "parseSNMP6", parseSNMP6, "quicconn: /proc/net/snmp6: ", []parseCase{
		{"real", snmp6, 5, ""},
		{"spaces", "Udp6RcvbufErrors 12\n", 12, ""},
		{"missing", "Udp6InErrors 5\nUdpLite6RcvbufErrors 77\n", 0, "no Udp6RcvbufErrors"},
		{"empty", "", 0, "no Udp6RcvbufErrors"},
		{"not a number", "Udp6RcvbufErrors five\n", 0, "Udp6RcvbufErrors: strconv.ParseUint"},
	})
}

// FuzzParseSNMP checks that the parsers never panic and that an accepted
// value survives a canonical re-encoding.
func FuzzParseSNMP(f *testing.F) {
	f.Add([]byte(snmp))
	f.Add([]byte(snmp6))
	f.Add([]byte("Udp: RcvbufErrors\nUdp: 1\n"))
	if b, err := os.ReadFile("/proc/net/snmp"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if n, err := parseSNMP(data); err == nil {
			again, err := parseSNMP(fmt.Appendf(nil, "Udp: InDatagrams RcvbufErrors\nUdp: 0 %d\n", n))
			if err != nil || again != n {
				t.Fatalf("parseSNMP accepted %d, re-encoded gives %d, %v", n, again, err)
			}
			if !strings.Contains(string(data), "RcvbufErrors") {
				t.Fatalf("parseSNMP accepted %d from input without RcvbufErrors", n)
			}
		}
		if n, err := parseSNMP6(data); err == nil {
			again, err := parseSNMP6(fmt.Appendf(nil, "Udp6RcvbufErrors\t%d\n", n))
			if err != nil || again != n {
				t.Fatalf("parseSNMP6 accepted %d, re-encoded gives %d, %v", n, again, err)
			}
		}
	})
}

// TestUDPRcvbufErrors overflows the receive buffer of a loopback socket
// that never reads and checks that the kernel's counter moves.
func TestUDPRcvbufErrors(t *testing.T) {
	before, err := UDPRcvbufErrors()
	if err != nil {
		t.Fatalf("UDPRcvbufErrors: %v", err)
	}
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	if err := rx.SetReadBuffer(1024); err != nil { // the kernel rounds up to its minimum
		t.Fatal(err)
	}
	tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	payload := make([]byte, 1000)
	var after uint64
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
		_, _ = tx.Write(payload)
		if i%100 == 99 {
			if after, err = UDPRcvbufErrors(); err != nil {
				t.Fatal(err)
			}
			if after > before {
				break
			}
		}
	}
	if after <= before {
		t.Fatalf("UDPRcvbufErrors = %d before and %d after overflowing a socket, want it to grow", before, after)
	}
}

func TestBufferAdvice(t *testing.T) {
	fix := ", quic-go wants 7168 KiB: sysctl -w net.core.rmem_max=7500000 net.core.wmem_max=7500000 (or install packaging/sysctl.d/60-godwit.conf), or run with CAP_NET_ADMIN"
	tests := []struct {
		name     string
		rcv, snd int
		want     string
	}{
		{"both enough", wantedBufferSize, wantedBufferSize, ""},
		{"rmem_max 3.5 MiB doubled", 2 * 3670016, 2 * 3670016, ""},
		{"linux default receive", 425984, wantedBufferSize, "UDP receive buffer is 416 KiB" + fix},
		{"send short", wantedBufferSize, 425984, "UDP send buffer is 416 KiB" + fix},
		{"both short", 425984, 1 << 20, "UDP receive buffer is 416 KiB and send buffer is 1024 KiB" + fix},
		{"one byte short", wantedBufferSize - 1, wantedBufferSize, "UDP receive buffer is 7167 KiB" + fix},
	}
	for _, tt := range tests {
		if got := BufferAdvice(tt.rcv, tt.snd); got != tt.want {
			t.Errorf("%s: BufferAdvice(%d, %d) = %q, want %q", tt.name, tt.rcv, tt.snd, got, tt.want)
		}
	}
}

func TestSocketBuffers(t *testing.T) {
	e := newEndpoint(t, Config{PrivateKey: newKey(t).priv, Listen: "127.0.0.1:0"})
	rcv, snd, err := e.SocketBuffers()
	if err != nil {
		t.Fatalf("SocketBuffers: %v", err)
	}
	t.Logf("SO_RCVBUF %d, SO_SNDBUF %d; advice %q", rcv, snd, BufferAdvice(rcv, snd))
	if rcv <= 0 || snd <= 0 {
		t.Fatalf("SocketBuffers = %d, %d; want positive sizes", rcv, snd)
	}
	// As root (CAP_NET_ADMIN) SO_RCVBUFFORCE ignores rmem_max, so the
	// endpoint must have what quic-go wants whatever the sysctls say.
	if os.Geteuid() == 0 && BufferAdvice(rcv, snd) != "" {
		t.Errorf("as root SocketBuffers = %d, %d; want both >= %d", rcv, snd, wantedBufferSize)
	}

	// A dialing-only endpoint has its buffers raised from the start too.
	d := newEndpoint(t, Config{PrivateKey: newKey(t).priv})
	drcv, dsnd, err := d.SocketBuffers()
	if err != nil {
		t.Fatal(err)
	}
	if drcv != rcv || dsnd != snd {
		t.Errorf("endpoint without Listen: SocketBuffers = %d, %d; want %d, %d like the listening one", drcv, dsnd, rcv, snd)
	}

	d.Close()
	if _, _, err := d.SocketBuffers(); err == nil {
		t.Error("SocketBuffers after Close succeeded")
	}
}
