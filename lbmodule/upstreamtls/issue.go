package upstreamtls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// backdate is how far before now a certificate becomes valid, so that a
// peer whose clock is a little behind accepts it at once.
const backdate = time.Minute

// leafRequest is what a certificate issued here says about its holder.
type leafRequest struct {
	commonName string
	dnsNames   []string
	ips        []net.IP
	usage      x509.ExtKeyUsage
	lifetime   time.Duration
}

// issueLeaf makes a fresh ECDSA P-256 key and a certificate for it signed
// by issuer. The certificate never outlives its issuer: its NotAfter is
// clamped to the issuer's.
func issueLeaf(req leafRequest, issuer *x509.Certificate, issuerKey crypto.Signer, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	if issuer == nil || issuerKey == nil {
		return nil, nil, errors.New("no issuing certificate or key")
	}
	if !now.Before(issuer.NotAfter) {
		return nil, nil, fmt.Errorf("issuing certificate %q expired at %s", issuer.Subject.CommonName, issuer.NotAfter.Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("generating serial number: %w", err)
	}
	notBefore := now.Add(-backdate)
	if notBefore.Before(issuer.NotBefore) {
		notBefore = issuer.NotBefore
	}
	notAfter := now.Add(req.lifetime)
	if notAfter.After(issuer.NotAfter) {
		notAfter = issuer.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: req.commonName},
		DNSNames:              req.dnsNames,
		IPAddresses:           req.ips,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{req.usage},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), issuerKey)
	if err != nil {
		return nil, nil, fmt.Errorf("signing certificate for %q: %w", req.commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing the certificate just signed: %w", err)
	}
	return cert, key, nil
}

// splitSANs sorts subject alternative names into IP addresses and DNS
// names, refusing empty names and names with spaces or slashes.
func splitSANs(sans []string) (dnsNames []string, ips []net.IP, err error) {
	for _, san := range sans {
		if ip := net.ParseIP(san); ip != nil {
			ips = append(ips, ip)
			continue
		}
		if san == "" || len(san) > 253 {
			return nil, nil, fmt.Errorf("name %q: not a DNS name or IP address", san)
		}
		for _, r := range san {
			if r <= ' ' || r == '/' || r == '\\' || r > '~' {
				return nil, nil, fmt.Errorf("name %q: not a DNS name or IP address", san)
			}
		}
		dnsNames = append(dnsNames, san)
	}
	return dnsNames, ips, nil
}
