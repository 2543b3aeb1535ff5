package testproc

import (
	"strings"
	"testing"
)

func TestFreePortIsListenableAndNotRepeated(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("FreePort returned %d twice", p)
		}
		seen[p] = true
		if !canListen(p) {
			t.Fatalf("FreePort returned %d, which cannot be listened on", p)
		}
		if p < portRangeLow || p >= ephemeralLow() {
			t.Fatalf("FreePort returned %d, outside [%d, %d)", p, portRangeLow, ephemeralLow())
		}
	}
}

func TestRedisKillRestart(t *testing.T) {
	r := StartRedis(t)
	if err := PingRedis(r.Addr, ""); err != nil {
		t.Fatalf("fresh redis: %v", err)
	}
	addr, pid := r.Addr, r.Pid()

	r.Kill()
	if err := PingRedis(r.Addr, ""); err == nil {
		t.Fatal("killed redis still answers PING")
	}
	if r.Running() {
		t.Fatal("Running() is true after Kill")
	}

	r.Restart(t)
	if r.Addr != addr {
		t.Fatalf("restarted on %s, want the same address %s", r.Addr, addr)
	}
	if r.Pid() == pid {
		t.Fatalf("restart kept pid %d; want a new process", pid)
	}
	if err := PingRedis(r.Addr, ""); err != nil {
		t.Fatalf("restarted redis: %v", err)
	}
}

func TestRedisPasswordRequired(t *testing.T) {
	r := StartRedisWithPassword(t, "s3cret")
	if err := PingRedis(r.Addr, ""); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("PING without AUTH: got %v, want a NOAUTH error", err)
	}
	if err := PingRedis(r.Addr, "wrong"); err == nil {
		t.Fatal("PING with a wrong password succeeded")
	}
	if err := PingRedis(r.Addr, "s3cret"); err != nil {
		t.Fatalf("PING with the password: %v", err)
	}
}

func TestRedisStopIsGraceful(t *testing.T) {
	r := StartRedis(t)
	r.Stop()
	if err := PingRedis(r.Addr, ""); err == nil {
		t.Fatal("stopped redis still answers PING")
	}
	// redis logs this only when it handles SIGTERM itself, not on SIGKILL.
	if !strings.Contains(r.Log(), "ready to exit") {
		t.Fatalf("redis log has no graceful shutdown line:\n%s", r.Log())
	}
}

func TestMemcachedKillRestart(t *testing.T) {
	m := StartMemcached(t)
	if err := PingMemcached(m.Addr); err != nil {
		t.Fatalf("fresh memcached: %v", err)
	}
	addr := m.Addr

	m.Kill()
	if err := PingMemcached(m.Addr); err == nil {
		t.Fatal("killed memcached still answers version")
	}

	m.Restart(t)
	if m.Addr != addr {
		t.Fatalf("restarted on %s, want the same address %s", m.Addr, addr)
	}
	if err := PingMemcached(m.Addr); err != nil {
		t.Fatalf("restarted memcached: %v", err)
	}
}

func TestProcessesEndWithTheirTest(t *testing.T) {
	var addr string
	t.Run("owner", func(t *testing.T) {
		addr = StartMemcached(t).Addr
	})
	if err := PingMemcached(addr); err == nil {
		t.Fatalf("memcached on %s still answers after its test ended", addr)
	}
}
