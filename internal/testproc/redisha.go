package testproc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RedisDo sends one command over raw RESP and returns its reply flattened
// to text: a status, integer or bulk string as is, an array as its
// elements one per line, nil as "". A Redis error reply is an error.
func RedisDo(addr, password string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	if password != "" {
		if err := redisCommand(conn, r, "+OK", "AUTH", password); err != nil {
			return "", err
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	var lines []string
	if err := readReply(r, &lines); err != nil {
		return "", err
	}
	return strings.Join(lines, "\n"), nil
}

func readReply(r *bufio.Reader, out *[]string) error {
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return errors.New("empty reply line")
	}
	switch line[0] {
	case '+', ':':
		*out = append(*out, line[1:])
	case '-':
		return errors.New(line[1:])
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			*out = append(*out, "")
			return nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return err
		}
		*out = append(*out, string(buf[:n]))
	case '*':
		n, _ := strconv.Atoi(line[1:])
		for range n {
			if err := readReply(r, out); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

// StartRedisReplica starts redis-server replicating primary.
func StartRedisReplica(t testing.TB, primary string) *Proc {
	t.Helper()
	bin := lookPath(t, "redis-server")
	port := FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	host, pport, _ := net.SplitHostPort(primary)
	// The primary would otherwise wait 5 s before the first (diskless) sync.
	if _, err := RedisDo(primary, "", "CONFIG", "SET", "repl-diskless-sync-delay", "0"); err != nil {
		t.Fatalf("configuring primary %s: %v", primary, err)
	}
	return Start(t, Spec{
		Name: "redis-replica",
		Path: bin,
		Args: []string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", t.TempDir(),
			"--replicaof", host, pport,
		},
		Addr:  addr,
		Ready: func() error { return PingRedis(addr, "") },
	})
}

// Sentinels are redis-sentinel processes monitoring one master set.
type Sentinels struct {
	Procs     []*Proc
	Addrs     []string
	MasterSet string
	Password  string
}

// StartSentinels starts n redis-sentinel processes monitoring primary as
// masterSet, with a quorum of n/2+1 and a down-after of 1 s so that a
// killed primary is failed over in a few seconds. With a password, the
// Sentinels require it (requirepass).
func StartSentinels(t testing.TB, n int, masterSet, primary, password string) *Sentinels {
	t.Helper()
	bin := lookPath(t, "redis-sentinel")
	host, pport, _ := net.SplitHostPort(primary)
	s := &Sentinels{MasterSet: masterSet, Password: password}
	for i := range n {
		port := FreePort(t)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		dir := t.TempDir()
		conf := filepath.Join(dir, "sentinel.conf") // sentinel rewrites it
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n"+
			"sentinel monitor %s %s %s %d\n"+
			"sentinel down-after-milliseconds %s 1000\n"+
			"sentinel failover-timeout %s 5000\n"+
			"sentinel parallel-syncs %s 1\n",
			port, dir, masterSet, host, pport, n/2+1, masterSet, masterSet, masterSet)
		if password != "" {
			body += "requirepass " + password + "\n"
		}
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		p := Start(t, Spec{
			Name:  "redis-sentinel-" + strconv.Itoa(i),
			Path:  bin,
			Args:  []string{conf},
			Addr:  addr,
			Ready: func() error { return PingRedis(addr, password) },
		})
		s.Procs = append(s.Procs, p)
		s.Addrs = append(s.Addrs, addr)
	}
	return s
}

// Primary asks the first Sentinel that answers for the master set's
// primary address.
func (s *Sentinels) Primary() (string, error) {
	var last error
	for _, a := range s.Addrs {
		out, err := RedisDo(a, s.Password, "SENTINEL", "get-master-addr-by-name", s.MasterSet)
		if err == nil {
			parts := strings.Split(out, "\n")
			if len(parts) == 2 {
				return net.JoinHostPort(parts[0], parts[1]), nil
			}
			err = fmt.Errorf("unexpected reply %q", out)
		}
		last = err
	}
	return "", last
}

// WaitKnowsReplicas waits until every Sentinel lists n replicas of the
// master set, so that a failover has a candidate.
func (s *Sentinels) WaitKnowsReplicas(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range s.Addrs {
		for {
			out, err := RedisDo(a, s.Password, "SENTINEL", "replicas", s.MasterSet)
			if err == nil && strings.Count(out, "\nslave\n")+strings.Count(out, "\nreplica\n") >= n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("sentinel %s does not list %d replicas: %q %v", a, n, out, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// Cluster is a Redis Cluster of primaries without replicas.
type Cluster struct {
	Nodes []*Proc
	Addrs []string
}

// StartRedisCluster starts n redis-server processes in cluster mode and
// joins them with `redis-cli --cluster create`, each primary holding a
// third (for n = 3) of the 16384 slots, then waits for cluster_state:ok.
func StartRedisCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	bin := lookPath(t, "redis-server")
	cli := lookPath(t, "redis-cli")
	c := &Cluster{}
	for i := range n {
		port := FreePort(t)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		dir := t.TempDir()
		p := Start(t, Spec{
			Name: "redis-cluster-" + strconv.Itoa(i),
			Path: bin,
			Args: []string{
				"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
				"--save", "", "--appendonly", "no", "--dir", dir,
				"--cluster-enabled", "yes",
				"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
				// The bus port defaults to port+10000, which may be in the
				// ephemeral range and taken: name a free one.
				"--cluster-port", strconv.Itoa(FreePort(t)),
				"--cluster-node-timeout", "2000",
			},
			Addr:  addr,
			Ready: func() error { return PingRedis(addr, "") },
		})
		c.Nodes = append(c.Nodes, p)
		c.Addrs = append(c.Addrs, addr)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range c.Addrs {
		for {
			out, err := RedisDo(a, "", "CLUSTER", "INFO")
			if err == nil && strings.Contains(out, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redis cluster node %s not ok: %q %v", a, out, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return c
}

// TLSFiles are the PEM files a TLS Redis deployment uses: its certificate
// and key, and the CA it verifies the servers it connects to against.
type TLSFiles struct{ Cert, Key, CA string }

func (f TLSFiles) args() []string {
	return []string{"--tls-cert-file", f.Cert, "--tls-key-file", f.Key, "--tls-ca-cert-file", f.CA,
		"--tls-auth-clients", "no", "--tls-replication", "yes"}
}

// StartRedisTLSPrimary starts a redis-server serving TLS only, that also
// replicates to its replicas over TLS.
func StartRedisTLSPrimary(t testing.TB, f TLSFiles) *Proc {
	t.Helper()
	return startTLSRedis(t, "redis-tls-primary", f)
}

// StartRedisTLSReplica starts a TLS-only redis-server replicating primary
// over TLS.
func StartRedisTLSReplica(t testing.TB, f TLSFiles, primary string) *Proc {
	t.Helper()
	host, port, _ := net.SplitHostPort(primary)
	return startTLSRedis(t, "redis-tls-replica", f, "--replicaof", host, port)
}

func startTLSRedis(t testing.TB, name string, f TLSFiles, extra ...string) *Proc {
	t.Helper()
	bin := lookPath(t, "redis-server")
	port := FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := append([]string{"--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir(), "--repl-diskless-sync-delay", "0"}, f.args()...)
	return Start(t, Spec{Name: name, Path: bin, Args: append(args, extra...), Addr: addr,
		Ready: func() error { return DialTCP(addr) }})
}

// StartSentinelsTLS is StartSentinels for a TLS deployment: the Sentinels
// serve TLS only and reach the primary and replicas over TLS. Their
// readiness is a TCP accept; Primary and WaitKnowsReplicas need plain
// Sentinels, so the caller checks the deployment through the client.
func StartSentinelsTLS(t testing.TB, n int, masterSet, primary string, f TLSFiles) *Sentinels {
	t.Helper()
	bin := lookPath(t, "redis-sentinel")
	host, pport, _ := net.SplitHostPort(primary)
	s := &Sentinels{MasterSet: masterSet}
	for i := range n {
		port := FreePort(t)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		dir := t.TempDir()
		conf := filepath.Join(dir, "sentinel.conf")
		body := fmt.Sprintf("port 0\ntls-port %d\nbind 127.0.0.1\ndir %s\n"+
			"tls-cert-file %s\ntls-key-file %s\ntls-ca-cert-file %s\ntls-auth-clients no\ntls-replication yes\n"+
			"sentinel monitor %s %s %s %d\nsentinel down-after-milliseconds %s 1000\n",
			port, dir, f.Cert, f.Key, f.CA, masterSet, host, pport, n/2+1, masterSet)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		p := Start(t, Spec{Name: "redis-sentinel-tls-" + strconv.Itoa(i), Path: bin, Args: []string{conf}, Addr: addr,
			Ready: func() error { return DialTCP(addr) }})
		s.Procs = append(s.Procs, p)
		s.Addrs = append(s.Addrs, addr)
	}
	return s
}
