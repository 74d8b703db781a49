package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/internal/testenv"
	"github.com/ember-storage/ember/router"
)

// The security tests start their own servers, configured the way a
// hardened deployment is: a Kafka broker whose only client listener is
// SASL_SSL (SCRAM-SHA-256/512 and PLAIN, deploy/testenv/kafka-sasl.sh) and
// a redis-server that speaks only TLS, wants client certificates and
// requires a password. They fail, not skip, when a server cannot start
// (unless -short).

func TestKafkaSecurityCombinations(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(empty, nil, 0o600)
	scram := router.KafkaSASL{Mechanism: "SCRAM-SHA-512", Username: "ember", PasswordFile: pw}
	for name, c := range map[string]struct {
		sec  router.KafkaSecurity
		want string // "" = accepted
	}{
		"plaintext":              {router.KafkaSecurity{}, ""},
		"scram without tls":      {router.KafkaSecurity{SASL: scram}, ""},
		"plain without tls":      {router.KafkaSecurity{SASL: router.KafkaSASL{Mechanism: "PLAIN", Username: "u", PasswordFile: pw}}, "PLAIN sends the password in clear text"},
		"plain with tls":         {router.KafkaSecurity{TLS: router.KafkaTLS{Enabled: true}, SASL: router.KafkaSASL{Mechanism: "plain", Username: "u", PasswordFile: pw}}, ""},
		"unknown mechanism":      {router.KafkaSecurity{SASL: router.KafkaSASL{Mechanism: "GSSAPI", Username: "u", PasswordFile: pw}}, "want SCRAM-SHA-512"},
		"no username":            {router.KafkaSecurity{SASL: router.KafkaSASL{Mechanism: "SCRAM-SHA-256", PasswordFile: pw}}, "needs a username"},
		"no password":            {router.KafkaSecurity{SASL: router.KafkaSASL{Mechanism: "SCRAM-SHA-256", Username: "u"}}, "EMBER_KAFKA_SASL_PASSWORD"},
		"user without mechanism": {router.KafkaSecurity{SASL: router.KafkaSASL{Username: "u"}}, "no mechanism"},
		"unreadable password":    {router.KafkaSecurity{SASL: router.KafkaSASL{Mechanism: "SCRAM-SHA-256", Username: "u", PasswordFile: filepath.Join(dir, "nope")}}, "kafka.sasl.password_file"},
		"empty password file":    {router.KafkaSecurity{SASL: router.KafkaSASL{Mechanism: "SCRAM-SHA-256", Username: "u", PasswordFile: empty}}, "is empty"},
		"files but tls off":      {router.KafkaSecurity{TLS: router.KafkaTLS{TLSFiles: router.TLSFiles{CAFile: pw}}}, "kafka.tls.enabled is false"},
		"unreadable ca":          {router.KafkaSecurity{TLS: router.KafkaTLS{Enabled: true, TLSFiles: router.TLSFiles{CAFile: filepath.Join(dir, "nope")}}}, "kafka.tls.ca_file"},
		"ca not pem":             {router.KafkaSecurity{TLS: router.KafkaTLS{Enabled: true, TLSFiles: router.TLSFiles{CAFile: pw}}}, "no PEM certificate"},
		"cert without key":       {router.KafkaSecurity{TLS: router.KafkaTLS{Enabled: true, TLSFiles: router.TLSFiles{CertFile: pw}}}, "cert_file and key_file go together"},
	} {
		rc := router.Config{Brokers: []string{"x:1"}}
		err := rc.Secure(c.sec)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: got %v, want an error containing %q", name, err, c.want)
		case err != nil && strings.Contains(err.Error(), "s3cret"):
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
	rc := router.Config{Brokers: []string{"x:1"}}
	if err := rc.Secure(router.KafkaSecurity{TLS: router.KafkaTLS{Enabled: true}, SASL: scram}); err != nil {
		t.Fatal(err)
	}
	sc := rc.SaramaConfig()
	if !sc.Net.TLS.Enable || !sc.Net.SASL.Enable || sc.Net.SASL.Password != "s3cret" || sc.Net.SASL.SCRAMClientGeneratorFunc == nil || sc.Validate() != nil {
		t.Fatalf("sarama config: tls %v sasl %v mechanism %s validate %v", sc.Net.TLS.Enable, sc.Net.SASL.Enable, sc.Net.SASL.Mechanism, sc.Validate())
	}
}

func TestSecretsDoNotPrint(t *testing.T) {
	s := router.Secret("hunter2")
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "password", s, "cfg", struct{ P router.Secret }{s})
	fmt.Fprintf(&buf, "%v %+v %#v %s %q", s, s, s, s, s)
	if strings.Contains(buf.String(), "hunter2") || s.Reveal() != "hunter2" {
		t.Fatalf("a secret printed: %s", buf.String())
	}
}

func TestRedisSecurityConfig(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	_ = os.WriteFile(pw, []byte("r3dis\n"), 0o600)
	write := func(body string) string {
		p := filepath.Join(dir, "ember.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := loadConfig(write("redis: {url: \"redis://u:fromurl@r:6379/0\", username: ops, password_file: " + pw + "}\n"))
	if err != nil {
		t.Fatal(err)
	}
	rdb, err := redisClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if o := rdb.(*redis.Client).Options(); o.Username != "ops" || o.Password != "r3dis" || o.TLSConfig != nil {
		t.Fatalf("redis options: user %q tls %v", o.Username, o.TLSConfig != nil)
	}
	t.Setenv("EMBER_REDIS_PASSWORD", "fromenv")
	if c, err = loadConfig(write("redis: {url: \"rediss://r:6380/0\", password_file: " + pw + "}\n")); err != nil {
		t.Fatal(err)
	}
	rdb2, _ := redisClient(c)
	defer rdb2.Close()
	if o := rdb2.(*redis.Client).Options(); o.Password != "fromenv" || o.TLSConfig == nil || o.TLSConfig.ServerName != "r" {
		t.Fatalf("env password and rediss: %+v", o.TLSConfig)
	}
	t.Setenv("EMBER_REDIS_PASSWORD", "") // the environment wins over password_file
	for body, want := range map[string]string{
		"redis: {url: \"redis://r:6379/0\", tls: {ca_file: " + pw + "}}\n":                                          "use rediss://",
		"redis: {url: \"rediss://r:6379/0\", tls: {ca_file: /nonexistent/ca.pem}}\n":                                "redis.tls.ca_file",
		"redis: {url: \"rediss://r:6379/0\", tls: {cert_file: " + pw + "}}\n":                                       "cert_file and key_file go together",
		"redis: {cluster: {addrs: [\"a:1\"]}, tls: {ca_file: " + pw + "}}\n":                                        "redis.tls.enabled is false",
		"redis: {url: \"redis://r:6379/0\", password_file: /nonexistent/pw}\n":                                      "redis.password_file",
		"kafka: {sasl: {mechanism: PLAIN, username: u, password_file: " + pw + "}}\n":                               "needs kafka.tls.enabled",
		"kafka: {sasl: {mechanism: SCRAM-SHA-256, username: u, password: inline}}\n":                                "field password not found",
		"kafka: {tls: {enabled: true, ca_file: /nonexistent/ca.pem}}\n":                                             "kafka.tls.ca_file",
		"kafka: {sasl: {mechanism: SCRAM-SHA-1, username: u, password_file: " + pw + "}}\n":                         "SCRAM-SHA-1",
		"redis: {cluster: {addrs: [\"a:1\"]}, tls: {enabled: true, cert_file: " + pw + ", key_file: " + pw + "}}\n": "cert_file/key_file",
	} {
		if _, err := loadConfig(write(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", strings.TrimSpace(body), err, want)
		}
	}
}

// --- real servers ---

// tlsFiles is a throwaway CA with a server certificate for 127.0.0.1 and a
// client certificate, as PEM files.
type tlsFiles struct{ ca, serverCert, serverKey, clientCert, clientKey string }

func makeTLSFiles(t *testing.T, dir string) tlsFiles {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	writeKey := func(name string, k *ecdsa.PrivateKey) string {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name, "PRIVATE KEY", der)
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ember-test-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, name string) (string, string) {
		k := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), writeKey(name+".key", k)
	}
	f := tlsFiles{ca: write("ca.pem", "CERTIFICATE", caDER)}
	f.serverCert, f.serverKey = leaf(2, "localhost", x509.ExtKeyUsageServerAuth, "server")
	f.clientCert, f.clientKey = leaf(3, "ember", x509.ExtKeyUsageClientAuth, "client")
	return f
}

func randomSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "pw" + hex.EncodeToString(b)
}

// freePorts finds n consecutive free loopback ports, away from the ones
// `make test` and developers use.
func freePorts(t *testing.T, n int) int {
	t.Helper()
	reserved := map[int]bool{19092: true, 16379: true, 29092: true, 26379: true, 39092: true, 36379: true}
	for try := 0; try < 50; try++ {
		base := 40000 + int(time.Now().UnixNano()%20000)
		ok := true
		for p := base; p < base+n && ok; p++ {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil || reserved[p] {
				ok = false
			}
			if err == nil {
				ln.Close()
			}
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free loopback ports")
	return 0
}

// tlsRedis starts redis-server with TLS only (no plaintext port), client
// certificates required and a password.
func tlsRedis(t *testing.T, f tlsFiles, password string) string {
	t.Helper()
	dir := t.TempDir()
	port := strconv.Itoa(freePorts(t, 1))
	cmd := exec.Command("redis-server", "--port", "0", "--tls-port", port, "--bind", "127.0.0.1",
		"--tls-cert-file", f.serverCert, "--tls-key-file", f.serverKey, "--tls-ca-cert-file", f.ca,
		"--tls-auth-clients", "yes", "--requirepass", password, "--save", "", "--appendonly", "no", "--dir", dir)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			t.Fatalf("redis-server (TLS) exited:\n%s", out.String())
		default:
		}
		if strings.Contains(out.String(), "Ready to accept connections") {
			return "127.0.0.1:" + port
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("redis-server (TLS) did not start on %s:\n%s", port, out.String())
	return ""
}

// saslKafka starts deploy/testenv/kafka-sasl.sh and returns the SASL_SSL
// address and the CA file.
func saslKafka(t *testing.T, user, password string) (addr, ca string) {
	t.Helper()
	dir := t.TempDir()
	port := strconv.Itoa(freePorts(t, 3))
	script, _ := filepath.Abs("../../deploy/testenv/kafka-sasl.sh")
	cmd := exec.Command(script, "up", dir, port)
	cmd.Env = append(os.Environ(), "KAFKA_SASL_USER="+user, "KAFKA_SASL_PASSWORD="+password)
	t.Cleanup(func() { _ = exec.Command(script, "down", dir).Run() })
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kafka-sasl.sh up: %v\n%s", err, out)
	}
	return "127.0.0.1:" + port, filepath.Join(dir, "ca.pem")
}

// emitEnv runs `ember emit` with extra environment.
func emitEnv(t *testing.T, env []string, data, typ string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, emberBin, append([]string{"emit", typ, "--data", "-"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(data)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// TestSASLSSLKafkaAndTLSRedis runs `ember serve` against a SASL_SSL-only
// broker and a TLS-only, password-protected redis-server, publishes and
// waits for results with `ember emit --wait`, checks that wrong passwords
// fail with a clear message, and that neither password appears in any log
// line, any output or any event.
func TestSASLSSLKafkaAndTLSRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a SASL_SSL Kafka and a TLS redis-server")
	}
	dir := t.TempDir()
	kpass, rpass := randomSecret(t), randomSecret(t)
	files := makeTLSFiles(t, dir)
	redisAddr := tlsRedis(t, files, rpass)
	kafkaAddr, kafkaCA := saslKafka(t, "ember", kpass)

	kpwFile, rpwFile := filepath.Join(dir, "kafka.pw"), filepath.Join(dir, "redis.pw")
	_ = os.WriteFile(kpwFile, []byte(kpass+"\n"), 0o600)
	_ = os.WriteFile(rpwFile, []byte(rpass+"\n"), 0o600)
	u := testenv.Unique()
	prefix := "sec" + u + "."
	cfgFile := filepath.Join(dir, "ember.yaml")
	yaml := fmt.Sprintf(`instance: sec
kafka:
  brokers: [%q]
  topic_prefix: %q
  group_prefix: %q
  partitions: 2
  tls: {enabled: true, ca_file: %q}
  sasl: {mechanism: SCRAM-SHA-512, username: ember, password_file: %q}
redis:
  url: "rediss://127.0.0.1:%s/0"
  key_prefix: %q
  password_file: %q
  tls: {ca_file: %q, cert_file: %q, key_file: %q}
delivery: {lease: 5s}
backends:
  - {name: local, driver: file, options: {dir: %q}}
default_backend: local
`, kafkaAddr, prefix, "g"+u, kafkaCA, kpwFile, strings.TrimPrefix(redisAddr, "127.0.0.1:"), "k"+u, rpwFile,
		files.ca, files.clientCert, files.clientKey, filepath.Join(dir, "volumes"))
	if err := os.MkdirAll(filepath.Join(dir, "volumes"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}

	// Redis: TLS + client certificate + AUTH works; a wrong password and a
	// missing client certificate fail clearly.
	cfg, err := loadConfig(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rdb, err := redisClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, "sec-probe", "1", time.Minute).Err(); err != nil {
		t.Fatalf("redis over TLS with AUTH: %v", err)
	}
	rdb.Close()
	wrong := *cfg
	wrong.Redis.Password = "not-the-password"
	rdb, _ = redisClient(&wrong)
	if err := rdb.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("redis with a wrong password: %v, want WRONGPASS", err)
	}
	rdb.Close()
	nocert := *cfg
	nocert.Redis.TLS.CertFile, nocert.Redis.TLS.KeyFile = "", ""
	rdb, _ = redisClient(&nocert)
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Fatal("redis accepted a client without a certificate")
	}
	rdb.Close()
	noca := *cfg
	noca.Redis.TLS.CAFile = ""
	rdb, _ = redisClient(&noca)
	if err := rdb.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("redis with an unknown CA: %v, want a certificate error", err)
	}
	rdb.Close()

	// The whole service over SASL_SSL + TLS Redis.
	httpAddr := freeAddr(t)
	serve := startEmber(t, []string{"EMBER_LOG_LEVEL=debug"}, "serve", "--config", cfgFile, "--http", httpAddr,
		"--functions", events.VolumeRequested+","+events.VolumeDeleted)
	waitHTTP(t, "http://"+httpAddr+"/readyz")
	vol := uuid.NewString()
	body := fmt.Sprintf(`{"volume_id":%q,"project_id":%q,"user_id":%q,"size_gb":1,"backend":"local"}`, vol, exampleProject, exampleUser)
	var outputs []string
	out, code := emitEnv(t, nil, body, events.VolumeRequested, "--config", cfgFile, "--wait", "--json", "--timeout", "60s")
	outputs = append(outputs, out)
	if code != 0 || !strings.Contains(out, "volume.create.end") || !strings.Contains(out, `"status":"available"`) {
		t.Fatalf("emit --wait over SASL_SSL (SCRAM-SHA-512): exit %d\n%s", code, out)
	}
	// SCRAM-SHA-256 and PLAIN (over TLS), from the environment.
	env := []string{"EMBER_KAFKA_BROKERS=" + kafkaAddr, "EMBER_KAFKA_TOPIC_PREFIX=" + prefix, "EMBER_KAFKA_TLS_CA_FILE=" + kafkaCA,
		"EMBER_KAFKA_SASL_USERNAME=ember", "EMBER_KAFKA_SASL_PASSWORD=" + kpass}
	for _, mech := range []string{"SCRAM-SHA-256", "PLAIN"} {
		del := fmt.Sprintf(`{"volume_id":%q,"project_id":%q}`, uuid.NewString(), exampleProject)
		out, code = emitEnv(t, append(env, "EMBER_KAFKA_SASL_MECHANISM="+mech), del, events.VolumeDeleted, "--wait", "--timeout", "60s")
		outputs = append(outputs, out)
		if code != 0 || !strings.Contains(out, "volume.delete.end") {
			t.Fatalf("emit --wait with %s from the environment: exit %d\n%s", mech, code, out)
		}
	}
	// dlq list speaks SASL_SSL too.
	dl, err := exec.Command(emberBin, "dlq", "list", events.VolumeRequested, "--config", cfgFile).CombinedOutput()
	outputs = append(outputs, string(dl))
	if err != nil || !strings.Contains(string(dl), "0 dead letters") {
		t.Fatalf("dlq list over SASL_SSL: %v\n%s", err, dl)
	}
	// A wrong password fails, and says why.
	start := time.Now()
	out, code = emitEnv(t, append(env, "EMBER_KAFKA_SASL_MECHANISM=SCRAM-SHA-512", "EMBER_KAFKA_SASL_PASSWORD=wrong-"+kpass[:4]),
		body, events.VolumeRequested)
	outputs = append(outputs, out)
	if code != 1 || !strings.Contains(strings.ToLower(out), "authentication failed") {
		t.Fatalf("emit with a wrong password: exit %d after %s\n%s", code, time.Since(start), out)
	}
	// Without TLS the SASL_SSL listener is unreachable.
	out, code = emitEnv(t, []string{"EMBER_KAFKA_SASL_MECHANISM=SCRAM-SHA-512", "EMBER_KAFKA_SASL_USERNAME=ember", "EMBER_KAFKA_SASL_PASSWORD=" + kpass},
		body, events.VolumeRequested, "--kafka", kafkaAddr)
	outputs = append(outputs, out)
	if code != 1 {
		t.Fatalf("emit without TLS to a SASL_SSL listener: exit %d\n%s", code, out)
	}

	// No secret anywhere: the serve log (debug level), every command's
	// output, and every record on every topic of this run.
	serve.stop(t)
	logs := serve.stderr.String()
	if !strings.Contains(logs, "functions ready") {
		t.Fatalf("serve log looks empty:\n%s", logs)
	}
	rc := router.Config{Brokers: []string{kafkaAddr}}
	if err := rc.Secure(cfg.Kafka.KafkaSecurity); err != nil {
		t.Fatal(err)
	}
	var topics []string
	for _, typ := range []string{events.VolumeRequested, events.VolumeDeleted} {
		topics = append(append(topics, typ, typ+".dlq"), events.ResultTypes(typ)...)
	}
	results := testenv.Collect(t, rc.Brokers, rc.SaramaConfig(), prefix, topics)
	results.Wait(t, "volume.create.end", "", 1)
	results.Wait(t, "volume.delete.end", "", 2)
	var records strings.Builder
	for _, typ := range topics {
		for _, r := range results.Of(typ, "") {
			fmt.Fprintf(&records, "%s %v %s\n", typ, r.Headers, r.Value)
		}
	}
	for where, text := range map[string]string{"serve log": logs, "command output": strings.Join(outputs, "\n"), "records": records.String()} {
		for name, secret := range map[string]string{"kafka": kpass, "redis": rpass} {
			if strings.Contains(text, secret) {
				t.Errorf("the %s password appears in the %s", name, where)
			}
		}
	}
}
