package upstreamtls

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/caddy/v2/modules/caddypki"
	"github.com/caddyserver/certmagic"
)

// backendCertOptions are the inputs of `caddy lb-cert`.
type backendCertOptions struct {
	caID       string
	outDir     string
	sans       []string
	lifetime   time.Duration
	storageDir string
	configFile string
	adapter    string
	force      bool
}

// backendCertFiles is what issueBackendCert wrote.
type backendCertFiles struct {
	key, cert, chain, ca string
	notAfter             time.Time
	pin                  string
}

// issueBackendCert loads the CA offline, signs a server certificate with
// its root and writes the files into opts.outDir.
func issueBackendCert(opts backendCertOptions) (backendCertFiles, error) {
	var files backendCertFiles
	if opts.outDir == "" {
		return files, errors.New("--out is required")
	}
	if len(opts.sans) == 0 {
		return files, errors.New("at least one --san is required")
	}
	if opts.lifetime <= 0 {
		return files, fmt.Errorf("--lifetime %s: must be positive", opts.lifetime)
	}
	if opts.storageDir != "" && opts.configFile != "" {
		return files, errors.New("--storage-dir and --config both name a storage; give one")
	}
	dnsNames, ips, err := splitSANs(opts.sans)
	if err != nil {
		return files, fmt.Errorf("--san %w", err)
	}
	files = backendCertPaths(opts.outDir)
	if !opts.force {
		if err := refuseExisting(files.key, files.cert, files.chain, files.ca); err != nil {
			return files, err
		}
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	ca, err := loadCAOffline(ctx, opts)
	if err != nil {
		return files, err
	}
	root := ca.RootCertificate()
	rootKey, err := ca.RootKey()
	if err != nil {
		return files, fmt.Errorf("CA %s: loading root key: %v", opts.caID, err)
	}
	leaf, key, err := issueLeaf(leafRequest{
		commonName: opts.sans[0],
		dnsNames:   dnsNames,
		ips:        ips,
		usage:      x509.ExtKeyUsageServerAuth,
		lifetime:   opts.lifetime,
	}, root, rootKey, time.Now())
	if err != nil {
		return files, fmt.Errorf("CA %s: %w", opts.caID, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return files, fmt.Errorf("encoding key: %v", err)
	}
	files.notAfter, files.pin = leaf.NotAfter, PinOf(leaf)
	return files, writeBackendCert(opts.outDir, files, keyDER, leaf.Raw, root.Raw)
}

// exportRoot writes the CA's root certificate and key into opts.outDir, for
// nodes that load the root from files (pki ca root cert/key) instead of
// sharing the storage. It answers the paths and the root's fingerprint.
func exportRoot(opts backendCertOptions) (certPath, keyPath, fingerprint string, err error) {
	if opts.outDir == "" {
		return "", "", "", errors.New("--out is required")
	}
	if opts.storageDir != "" && opts.configFile != "" {
		return "", "", "", errors.New("--storage-dir and --config both name a storage; give one")
	}
	certPath, keyPath = filepath.Join(opts.outDir, "root.crt"), filepath.Join(opts.outDir, "root.key")
	if !opts.force {
		if err := refuseExisting(certPath, keyPath); err != nil {
			return "", "", "", err
		}
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	ca, err := loadCAOffline(ctx, opts)
	if err != nil {
		return "", "", "", err
	}
	root := ca.RootCertificate()
	rootKey, err := ca.RootKey()
	if err != nil {
		return "", "", "", fmt.Errorf("CA %s: loading root key: %v", opts.caID, err)
	}
	keyPEM, err := certmagic.PEMEncodePrivateKey(rootKey)
	if err != nil {
		return "", "", "", fmt.Errorf("encoding root key: %v", err)
	}
	if err := os.MkdirAll(opts.outDir, 0o700); err != nil {
		return "", "", "", fmt.Errorf("creating %s: %v", opts.outDir, err)
	}
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return "", "", "", err
	}
	if err := writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}), 0o644); err != nil {
		return "", "", "", err
	}
	return certPath, keyPath, rootFingerprint(root), nil
}

func backendCertPaths(dir string) backendCertFiles {
	return backendCertFiles{
		key:   filepath.Join(dir, "key.pem"),
		cert:  filepath.Join(dir, "cert.pem"),
		chain: filepath.Join(dir, "chain.pem"),
		ca:    filepath.Join(dir, "ca.pem"),
	}
}

func refuseExisting(paths ...string) error {
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s exists; pass --force to overwrite", p)
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("checking %s: %v", p, err)
		}
	}
	return nil
}

// loadCAOffline provisions the CA from storage without a running Caddy.
// It refuses to create a CA: a new one would silently differ from the one
// caddy-lb trusts, for example when the storage given is the wrong one.
func loadCAOffline(ctx caddy.Context, opts backendCertOptions) (*caddypki.CA, error) {
	storageRaw, ca, err := offlineCAConfig(opts)
	if err != nil {
		return nil, err
	}
	if ca.StorageRaw == nil {
		ca.StorageRaw = storageRaw
	}
	if ca.Root == nil {
		if err := requireStoredRoot(ctx, ca.StorageRaw, opts.caID); err != nil {
			return nil, err
		}
	}
	if err := ca.Provision(ctx, opts.caID, caddy.Log()); err != nil {
		return nil, fmt.Errorf("loading CA %s: %v", opts.caID, err)
	}
	return ca, nil
}

// offlineCAConfig finds the storage and the CA's settings: from --config,
// else a file_system storage at --storage-dir or Caddy's data directory.
func offlineCAConfig(opts backendCertOptions) (json.RawMessage, *caddypki.CA, error) {
	ca := new(caddypki.CA)
	if opts.configFile == "" {
		dir := opts.storageDir
		if dir == "" {
			dir = caddy.AppDataDir()
		}
		raw, err := json.Marshal(map[string]string{"module": "file_system", "root": dir})
		return raw, ca, err
	}
	cfgJSON, _, _, err := caddycmd.LoadConfig(opts.configFile, opts.adapter)
	if err != nil {
		return nil, nil, fmt.Errorf("loading --config %s: %v", opts.configFile, err)
	}
	var cfg struct {
		Storage json.RawMessage `json:"storage"`
		Apps    struct {
			PKI struct {
				CAs map[string]*caddypki.CA `json:"certificate_authorities"`
			} `json:"pki"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		return nil, nil, fmt.Errorf("reading --config %s: %v", opts.configFile, err)
	}
	if configured := cfg.Apps.PKI.CAs[opts.caID]; configured != nil {
		ca = configured
	}
	if cfg.Storage == nil {
		raw, err := json.Marshal(map[string]string{"module": "file_system", "root": caddy.AppDataDir()})
		return raw, ca, err
	}
	return cfg.Storage, ca, nil
}

// requireStoredRoot fails unless the storage holds the CA's root.
func requireStoredRoot(ctx caddy.Context, storageRaw json.RawMessage, caID string) error {
	holder := struct {
		StorageRaw json.RawMessage `json:"storage,omitempty" caddy:"namespace=caddy.storage inline_key=module"`
	}{StorageRaw: storageRaw}
	mod, err := ctx.LoadModule(&holder, "StorageRaw")
	if err != nil {
		return fmt.Errorf("loading storage %s: %v", storageRaw, err)
	}
	storage, err := mod.(caddy.StorageConverter).CertMagicStorage()
	if err != nil {
		return fmt.Errorf("opening storage %s: %v", storageRaw, err)
	}
	key := path.Join("pki", "authorities", certmagic.StorageKeys.Safe(caID), "root.crt")
	if !storage.Exists(ctx, key) {
		return fmt.Errorf("no CA %q in storage %s (no %s): start caddy-lb with transport reencrypt once, or point --storage-dir or --config at its storage", caID, storage, key)
	}
	return nil
}

// writeBackendCert writes the four files; each appears complete or not at
// all (written to a temporary file, then renamed).
func writeBackendCert(dir string, files backendCertFiles, keyDER, leafDER, rootDER []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %v", dir, err)
	}
	leafPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER})
	rootPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER})
	writes := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{files.key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600},
		{files.cert, leafPEM, 0o644},
		{files.chain, append(append([]byte{}, leafPEM...), rootPEM...), 0o644},
		{files.ca, rootPEM, 0o644},
	}
	for _, w := range writes {
		if err := writeFileAtomic(w.path, w.data, w.mode); err != nil {
			return err
		}
	}
	return nil
}

func writeFileAtomic(name string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".lb-cert-*")
	if err != nil {
		return fmt.Errorf("writing %s: %v", name, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing left to remove
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %v", name, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %v", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %v", name, err)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return fmt.Errorf("writing %s: %v", name, err)
	}
	return nil
}
