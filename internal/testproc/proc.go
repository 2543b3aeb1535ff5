// Package testproc starts real servers as child processes for tests: redis,
// memcached, the custom Caddy binary, demo backends. Each listens on a free
// loopback port, its output goes to a file in the test's temporary
// directory and is printed when the test fails, and it is killed when the
// test ends. A process can be killed and restarted on the same port, which
// is what fault tests need.
package testproc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Spec describes a process to start.
type Spec struct {
	// Name labels the process in log dumps and failure messages.
	Name string
	// Path is the program to run, Args its arguments (without argv[0]).
	Path string
	Args []string
	// Env is added to the test process's environment.
	Env []string
	// Dir is the working directory. Default is the test's working directory.
	Dir string
	// Addr is where the process listens (host:port); it becomes Proc.Addr.
	Addr string
	// Ready answers nil once the process serves. Default is a TCP connect
	// to Addr.
	Ready func() error
	// ReadyTimeout bounds the wait for Ready. Default is 10 s.
	ReadyTimeout time.Duration
}

// Proc is a running (or killed) child process.
type Proc struct {
	// Addr is the address the process listens on, host:port.
	Addr string

	spec    Spec
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	logF *os.File
}

// logDumpLimit is how much of the end of a process's log a failed test prints.
const logDumpLimit = 64 << 10

// Start runs spec and waits until it is ready; it fails the test if the
// process cannot start, exits early, or is not ready in time. The process
// is killed when the test ends, and its log is printed if the test failed.
func Start(t testing.TB, spec Spec) *Proc {
	t.Helper()
	if spec.Name == "" {
		spec.Name = spec.Path
	}
	if spec.Ready == nil {
		addr := spec.Addr
		spec.Ready = func() error { return DialTCP(addr) }
	}
	if spec.ReadyTimeout == 0 {
		spec.ReadyTimeout = 10 * time.Second
	}
	logF, err := os.CreateTemp(t.TempDir(), "proc-*.log")
	if err != nil {
		t.Fatalf("%s: creating log file: %v", spec.Name, err)
	}
	p := &Proc{Addr: spec.Addr, spec: spec, logPath: logF.Name(), logF: logF}
	t.Cleanup(func() {
		p.Kill()
		p.logF.Close()
		if t.Failed() {
			t.Logf("%s (%s) log:\n%s", spec.Name, spec.Addr, tail(p.Log(), logDumpLimit))
		}
	})
	p.start(t)
	return p
}

// start launches the process and waits for it to be ready.
func (p *Proc) start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(p.spec.Path, p.spec.Args...)
	cmd.Env = append(os.Environ(), p.spec.Env...)
	cmd.Dir = p.spec.Dir
	cmd.Stdout = p.logF
	cmd.Stderr = p.logF
	cmd.SysProcAttr = childProcAttr()
	fmt.Fprintf(p.logF, "--- %s start: %s %q\n", time.Now().Format(time.TimeOnly), p.spec.Path, p.spec.Args)
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: starting %s: %v", p.spec.Name, p.spec.Path, err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(p.logF, "--- %s exit: %v\n", time.Now().Format(time.TimeOnly), err)
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()

	if err := p.waitReady(done); err != nil {
		p.Kill()
		t.Fatalf("%s on %s: %v\nlog:\n%s", p.spec.Name, p.Addr, err, tail(p.Log(), logDumpLimit))
	}
}

// waitReady polls Ready until it answers nil, the process exits, or
// ReadyTimeout passes.
func (p *Proc) waitReady(done <-chan struct{}) error {
	deadline := time.Now().Add(p.spec.ReadyTimeout)
	for {
		err := p.spec.Ready()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("exited before it was ready (last check: %v)", err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %v", p.spec.ReadyTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill sends SIGKILL to the process (and anything it started) and waits for
// it to exit. Killing a process that already exited does nothing.
func (p *Proc) Kill() { p.signalAndWait(syscall.SIGKILL, 0) }

// Stop sends SIGTERM and waits for the process to exit; after 15 s it
// kills it.
func (p *Proc) Stop() { p.signalAndWait(syscall.SIGTERM, 15*time.Second) }

// signalAndWait signals the process group and waits for the exit; with a
// non-zero grace it falls back to SIGKILL once grace has passed.
func (p *Proc) signalAndWait(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || exited(done) {
		return
	}
	signalGroup(cmd, sig)
	if grace == 0 {
		<-done
		return
	}
	select {
	case <-done:
	case <-time.After(grace):
		signalGroup(cmd, syscall.SIGKILL)
		<-done
	}
}

// Restart starts the process again on the same address and waits until it
// is ready. A process that still runs is killed first.
func (p *Proc) Restart(t testing.TB) {
	t.Helper()
	p.Kill()
	p.start(t)
}

// Running reports whether the process has been started and not yet exited.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !exited(p.done)
}

// Pid is the process id of the current run.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Log is everything the process wrote to stdout and stderr, across
// restarts, with a marker line at each start and exit.
func (p *Proc) Log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(reading log %s: %v)", p.logPath, err)
	}
	return string(b)
}

// LogPath is the file that receives the process's output.
func (p *Proc) LogPath() string { return p.logPath }

func exited(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// signalGroup signals the whole process group, so helpers a server forks do
// not outlive it; it falls back to the process alone.
func signalGroup(cmd *exec.Cmd, sig syscall.Signal) {
	if err := syscall.Kill(-cmd.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		_ = cmd.Process.Signal(sig)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "[... " + fmt.Sprint(len(s)-n) + " bytes cut ...]\n" + s[len(s)-n:]
}
