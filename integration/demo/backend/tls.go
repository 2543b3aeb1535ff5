package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
)

// tlsOptions are the flags of the HTTPS listener.
type tlsOptions struct {
	listen       string
	certFile     string
	keyFile      string
	clientCAFile string
}

// config loads the certificate and, when a client CA is given, requires
// and verifies client certificates against it: that is how a backend
// accepts caddy-lb's `client_cert internal` and nobody else.
func (o tlsOptions) config() (*tls.Config, error) {
	if o.certFile == "" || o.keyFile == "" {
		return nil, errors.New("-tls-listen needs -tls-cert and -tls-key")
	}
	cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the TLS certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if o.clientCAFile != "" {
		pem, err := os.ReadFile(o.clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("reading the client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", o.clientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// tlsInfoResponse shows a person (or a test) looking through the load
// balancer that the hop to the backend was encrypted and who the backend
// let in: with `transport reencrypt` and `client_cert internal`, TLS is
// true and the client certificate is caddy-lb's.
type tlsInfoResponse struct {
	Backend           string `json:"backend"`
	TLS               bool   `json:"tls"`
	Version           string `json:"version,omitempty"`
	ServerName        string `json:"server_name,omitempty"`
	ClientCertSubject string `json:"client_cert_subject,omitempty"`
	ClientCertIssuer  string `json:"client_cert_issuer,omitempty"`
}

func (a *app) tlsInfo(w http.ResponseWriter, r *http.Request) {
	resp := tlsInfoResponse{Backend: a.name, TLS: r.TLS != nil}
	if r.TLS != nil {
		resp.Version = tls.VersionName(r.TLS.Version)
		resp.ServerName = r.TLS.ServerName
		if len(r.TLS.PeerCertificates) > 0 {
			leaf := r.TLS.PeerCertificates[0]
			resp.ClientCertSubject = leaf.Subject.String()
			resp.ClientCertIssuer = leaf.Issuer.String()
		}
	}
	writeJSON(w, resp)
}
