package logship

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddylb/caddylb/assetcdn/objectstore"
)

// A spool directory records where its files go (spoolMetaName), so that
// a process that finds it unused can ship what it holds: the directory
// of a writer whose settings changed across a restart, one spooled
// beside a directory that was in use (".pid<n>"), one left by a process
// that exited before its flush was done. Without this such files would
// wait for a process with exactly the same settings, maybe forever.
const spoolMetaName = "writer.json"

// errSpoolLocked: another process holds the spool directory.
var errSpoolLocked = errors.New("another process uses this spool directory")

// spoolMeta is the JSON form of the settings a spool was written with.
type spoolMeta struct {
	Store        string        `json:"store"`
	Prefix       string        `json:"prefix"`
	Key          string        `json:"key"`
	Host         string        `json:"host"`
	Name         string        `json:"name"`
	RollSize     int64         `json:"roll_size"`
	SpoolMax     int64         `json:"spool_max"`
	RollInterval time.Duration `json:"roll_interval"`
	FlushTimeout time.Duration `json:"flush_timeout"`
	MaxBackoff   time.Duration `json:"max_backoff"`
	OnFull       string        `json:"on_full"`
	Kind         string        `json:"kind,omitempty"` // "" from before ship_logs: "log"
}

func (m spoolMeta) settings() settings {
	return settings{
		store: m.Store, prefix: m.Prefix, key: m.Key, host: m.Host, name: m.Name,
		rollSize: m.RollSize, spoolMax: m.SpoolMax, rollInterval: m.RollInterval,
		flushTimeout: m.FlushTimeout, maxBackoff: m.MaxBackoff, onFull: m.OnFull,
		kind: cmp.Or(m.Kind, kindLog),
	}
}

// writeSpoolMeta records st in dir, atomically.
func writeSpoolMeta(dir string, st settings) error {
	meta := spoolMeta{
		Store: st.store, Prefix: st.prefix, Key: st.key, Host: st.host, Name: st.name,
		RollSize: st.rollSize, SpoolMax: st.spoolMax, RollInterval: st.rollInterval,
		FlushTimeout: st.flushTimeout, MaxBackoff: st.maxBackoff, OnFull: st.onFull,
		Kind: st.kind,
	}
	data, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(dir, spoolMetaName, data); err != nil {
		return fmt.Errorf("log spool %s: %v", dir, err)
	}
	return nil
}

func readSpoolMeta(dir string) (spoolMeta, error) {
	var meta spoolMeta
	data, err := os.ReadFile(filepath.Join(dir, spoolMetaName))
	if err != nil {
		return meta, err
	}
	return meta, json.Unmarshal(data, &meta)
}

// pidSuffix matches the directories spooled beside one in use.
var pidSuffix = regexp.MustCompile(`\.pid[0-9]+$`)

// adoptionCandidates are the directories sl may adopt: every spool
// under the default parent when sl's is there, and the ".pid<n>"
// siblings of sl's own directory (or of the one it stands in for).
func adoptionCandidates(dir string) []string {
	parent := filepath.Dir(dir)
	home := pidSuffix.ReplaceAllString(dir, "")
	defaultParent := filepath.Join(caddy.AppDataDir(), "logship")
	entries, err := os.ReadDir(parent)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		p := filepath.Join(parent, e.Name())
		if !e.IsDir() || p == dir {
			continue
		}
		if parent == defaultParent || pidSuffix.ReplaceAllString(p, "") == home {
			out = append(out, p)
		}
	}
	return out
}

// adoptOrphans ships the files of unused spool directories that go to
// a store app declares, each with the settings it was written with, for
// the rest of the process. An empty ".pid<n>" directory is removed.
func adoptOrphans(sl *slot, app *objectstore.App) {
	for _, dir := range adoptionCandidates(sl.dir) {
		registry.mu.Lock()
		taken := registry.slots[dir] != nil
		registry.mu.Unlock()
		if taken {
			continue
		}
		meta, err := readSpoolMeta(dir)
		if err != nil {
			continue // not a spool, or one from before spools had meta
		}
		store, err := app.Store(meta.Store)
		if err != nil {
			continue // goes to a store this config does not have
		}
		adopt(dir, meta, store)
	}
}

// adopt opens dir, if no process holds it, and ships what it holds.
func adopt(dir string, meta spoolMeta, store objectstore.Store) {
	st := meta.settings()
	tmpl, err := parseKeyTemplate(st.key)
	if err != nil {
		return
	}
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if registry.slots[dir] != nil {
		return
	}
	sp, err := openSpool(dir, metricsFor(dir, st.source()))
	if err != nil {
		return // in use by another process, or unreadable
	}
	if files, _ := sp.stats(); files == 0 {
		sp.lock.Close()
		if pidSuffix.MatchString(dir) {
			_ = removeEmptySpool(dir)
		}
		return
	}
	sp.configure(st.rollSize, st.spoolMax, st.onFull)
	sl := &slot{dir: dir, spool: sp, last: registration{settings: st, tmpl: tmpl, store: store}}
	registry.slots[dir] = sl
	sl.shipper = startShipper(sl)
	files, bytes := sp.stats()
	logger().Info("shipping the files of an unused log spool", zap.String("spool", dir),
		zap.String("store", st.store), zap.String("host", st.host), zap.Int("files", files), zap.Int64("bytes", bytes))
}

// removeEmptySpool deletes a spool directory that holds only its lock
// and meta files.
func removeEmptySpool(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() != lockName && e.Name() != spoolMetaName {
			return fs.ErrExist
		}
	}
	return os.RemoveAll(dir)
}
