package router

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/Shopify/sarama"
	"github.com/xdg-go/scram"
)

// Secret is a password read from a file or the environment. It prints,
// logs and marshals as "[redacted]": only Reveal returns the value.
type Secret string

const redacted = "[redacted]"

func (s Secret) String() string                { return redacted }
func (s Secret) GoString() string              { return redacted }
func (s Secret) Format(f fmt.State, _ rune)    { _, _ = f.Write([]byte(redacted)) }
func (s Secret) LogValue() slog.Value          { return slog.StringValue(redacted) }
func (s Secret) MarshalText() ([]byte, error)  { return []byte(redacted), nil }
func (s Secret) MarshalJSON() ([]byte, error)  { return []byte(`"` + redacted + `"`), nil }
func (s Secret) MarshalYAML() (any, error)     { return redacted, nil }
func (s Secret) Reveal() string                { return string(s) }
func (s *Secret) UnmarshalText(b []byte) error { *s = Secret(b); return nil }

// ReadSecret reads a password file: the whole file, less one trailing
// newline. An empty file or one with more than one line is refused.
func ReadSecret(field, path string) (Secret, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(raw), "\n"), "\r")
	if s == "" {
		return "", fmt.Errorf("%s: %s is empty", field, path)
	}
	if strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("%s: %s has more than one line", field, path)
	}
	return Secret(s), nil
}

// TLSFiles are the PEM files of a TLS client: the CA that signed the
// server's certificate (the system pool when empty) and, for mutual TLS,
// the client's certificate and key.
type TLSFiles struct {
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
}

// Set reports whether any file or name is configured.
func (f TLSFiles) Set() bool {
	return f.CAFile != "" || f.CertFile != "" || f.KeyFile != "" || f.ServerName != ""
}

// Config loads the files into a client TLS configuration (TLS 1.2 at least;
// certificates are always verified).
func (f TLSFiles) Config(field string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s.ca_file: %w", field, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s.ca_file: %s holds no PEM certificate", field, f.CAFile)
		}
		tc.RootCAs = pool
	}
	switch {
	case f.CertFile != "" && f.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s.cert_file/key_file: %w", field, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	case f.CertFile != "" || f.KeyFile != "":
		return nil, fmt.Errorf("%s: cert_file and key_file go together (a client certificate needs its key)", field)
	}
	return tc, nil
}

// KafkaTLS is kafka.tls in the configuration file.
type KafkaTLS struct {
	Enabled  bool `yaml:"enabled"`
	TLSFiles `yaml:",inline"`
}

// SASL mechanisms Ember speaks to Kafka.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// KafkaSASL is kafka.sasl in the configuration file. Password comes from
// PasswordFile or the environment, never from the file itself.
type KafkaSASL struct {
	Mechanism    string `yaml:"mechanism"`
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	Password     Secret `yaml:"-"`
}

// KafkaSecurity is how Ember's Kafka clients encrypt and authenticate.
type KafkaSecurity struct {
	TLS  KafkaTLS  `yaml:"tls"`
	SASL KafkaSASL `yaml:"sasl"`
}

// LoadPassword fills SASL.Password from SASL.PasswordFile unless it is set
// already (the environment wins over the file).
func (s *KafkaSecurity) LoadPassword() error {
	if s.SASL.Password != "" || s.SASL.PasswordFile == "" {
		return nil
	}
	p, err := ReadSecret("kafka.sasl.password_file", s.SASL.PasswordFile)
	s.SASL.Password = p
	return err
}

// Check reports combinations that cannot work or would be unsafe.
func (s *KafkaSecurity) Check() error {
	var errs []error
	if !s.TLS.Enabled && s.TLS.Set() {
		errs = append(errs, errors.New("kafka.tls: files are set but kafka.tls.enabled is false"))
	}
	if s.TLS.Enabled && (s.TLS.CertFile == "") != (s.TLS.KeyFile == "") {
		errs = append(errs, errors.New("kafka.tls: cert_file and key_file go together"))
	}
	m := strings.ToUpper(s.SASL.Mechanism)
	switch {
	case m == "":
		if s.SASL.Username != "" || s.SASL.PasswordFile != "" || s.SASL.Password != "" {
			errs = append(errs, errors.New("kafka.sasl: a username or password is set but no mechanism (SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN)"))
		}
	case m != SASLScramSHA256 && m != SASLScramSHA512 && m != SASLPlain:
		errs = append(errs, fmt.Errorf("kafka.sasl.mechanism %q: want SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN", s.SASL.Mechanism))
	default:
		if s.SASL.Username == "" {
			errs = append(errs, fmt.Errorf("kafka.sasl: %s needs a username", m))
		}
		if s.SASL.Password == "" && s.SASL.PasswordFile == "" {
			errs = append(errs, fmt.Errorf("kafka.sasl: %s needs a password: kafka.sasl.password_file or EMBER_KAFKA_SASL_PASSWORD", m))
		}
		if m == SASLPlain && !s.TLS.Enabled {
			errs = append(errs, errors.New("kafka.sasl: PLAIN sends the password in clear text: it needs kafka.tls.enabled"))
		}
	}
	return errors.Join(errs...)
}

// Option checks s, reads its files and returns the adjustment of the
// Kafka client configuration (Config.Sarama). A zero KafkaSecurity gives a
// nil option: plaintext, unauthenticated.
func (s *KafkaSecurity) Option() (func(*sarama.Config), error) {
	if err := s.LoadPassword(); err != nil {
		return nil, err
	}
	if err := s.Check(); err != nil {
		return nil, err
	}
	var tc *tls.Config
	if s.TLS.Enabled {
		var err error
		if tc, err = s.TLS.Config("kafka.tls"); err != nil {
			return nil, err
		}
	}
	mech := strings.ToUpper(s.SASL.Mechanism)
	if tc == nil && mech == "" {
		return nil, nil
	}
	user, password := s.SASL.Username, s.SASL.Password.Reveal()
	return func(sc *sarama.Config) {
		if tc != nil {
			sc.Net.TLS.Enable = true
			sc.Net.TLS.Config = tc.Clone()
		}
		if mech == "" {
			return
		}
		sc.Net.SASL.Enable = true
		sc.Net.SASL.Handshake = true
		sc.Net.SASL.Version = sarama.SASLHandshakeV1
		sc.Net.SASL.User = user
		sc.Net.SASL.Password = password
		sc.Net.SASL.Mechanism = sarama.SASLMechanism(mech)
		switch mech {
		case SASLScramSHA256:
			sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: sha256.New} }
		case SASLScramSHA512:
			sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: sha512.New} }
		}
	}, nil
}

// Secure applies s to every Kafka client c configures (after any Sarama
// adjustment already set).
func (c *Config) Secure(s KafkaSecurity) error {
	opt, err := s.Option()
	if err != nil || opt == nil {
		return err
	}
	prev := c.Sarama
	c.Sarama = func(sc *sarama.Config) {
		if prev != nil {
			prev(sc)
		}
		opt(sc)
	}
	return nil
}

// scramClient is sarama's SCRAM conversation, done by xdg-go/scram.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

var _ sarama.SCRAMClient = (*scramClient)(nil)

func (x *scramClient) Begin(user, password, authzID string) error {
	c, err := x.hash.NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	x.conv = c.NewConversation()
	return nil
}

func (x *scramClient) Step(challenge string) (string, error) { return x.conv.Step(challenge) }
func (x *scramClient) Done() bool                            { return x.conv.Done() }
