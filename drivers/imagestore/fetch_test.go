package imagestore

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ember-storage/ember/drivers"
)

func fetchAll(t *testing.T, f *Fetcher, url string) []byte {
	t.Helper()
	rc, size, err := f.Open(context.Background(), url)
	if err != nil {
		t.Fatalf("Open %s: %v", url, err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(got)) != size {
		t.Fatalf("Open %s said %d bytes, gave %d", url, size, len(got))
	}
	return got
}

// qemuImg runs qemu-img for a test fixture.
func qemuImgRun(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %v: %v: %s", args, err, out)
	}
}

// fixture is an image directory served over HTTP, and a second server
// standing for a host that is not allowed.
type fixture struct {
	dir         string
	data        []byte
	allowed     *httptest.Server
	other       *httptest.Server
	otherHits   atomic.Int32
	fetcher     *Fetcher
	allowedBase string // http://127.0.0.1:port/images/
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	requireQemuImg(t)
	fx := &fixture{dir: t.TempDir(), data: volumeBytes(2<<20+4096, 9)}
	images := filepath.Join(fx.dir, "images")
	os.Mkdir(images, 0o750)
	os.WriteFile(filepath.Join(images, "vm.raw"), fx.data, 0o640)
	qemuImgRun(t, "convert", "-f", "raw", "-O", "qcow2", filepath.Join(images, "vm.raw"), filepath.Join(images, "vm.qcow2"))
	os.WriteFile(filepath.Join(fx.dir, "secret"), []byte("not an image"), 0o640)

	mux := http.NewServeMux()
	mux.Handle("/images/", http.StripPrefix("/images/", http.FileServer(http.Dir(images))))
	mux.HandleFunc("/secret", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("secret")) })
	mux.HandleFunc("/images/chunked.raw", func(w http.ResponseWriter, r *http.Request) {
		// No Content-Length: the size is known only at the end.
		for off := 0; off < len(fx.data); off += 64 << 10 {
			w.Write(fx.data[off:min(off+64<<10, len(fx.data))])
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/images/to-other", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, fx.other.URL+"/images/vm.raw", http.StatusFound)
	})
	mux.HandleFunc("/images/to-secret", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/secret", http.StatusMovedPermanently)
	})
	mux.HandleFunc("/images/to-qcow2", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/images/vm.qcow2", http.StatusFound)
	})
	mux.HandleFunc("/images/broken", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) })
	mux.HandleFunc("/images/forbidden", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusForbidden) })
	fx.allowed = httptest.NewServer(mux)
	t.Cleanup(fx.allowed.Close)
	fx.other = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fx.otherHits.Add(1)
		w.Write(fx.data)
	}))
	t.Cleanup(fx.other.Close)

	fx.allowedBase = fx.allowed.URL + "/images/"
	fx.fetcher = &Fetcher{
		AllowedPrefixes: []string{fx.allowedBase, "file://" + images},
		TempDir:         t.TempDir(),
	}
	return fx
}

func TestFetchRawAndQcow2(t *testing.T) {
	fx := newFixture(t)
	images := "file://" + filepath.Join(fx.dir, "images")
	for _, url := range []string{
		images + "/vm.raw",
		images + "/vm.qcow2",
		fx.allowedBase + "vm.raw",
		fx.allowedBase + "vm.qcow2",
		fx.allowedBase + "chunked.raw",
		fx.allowedBase + "to-qcow2", // a redirect that stays under the prefix
		"FILE://localhost" + filepath.Join(fx.dir, "images", "vm.qcow2"),
	} {
		if got := fetchAll(t, fx.fetcher, url); !bytes.Equal(got, fx.data) {
			t.Fatalf("%s: %d bytes differ from the %d of the image", url, len(got), len(fx.data))
		}
	}
	if left, _ := os.ReadDir(fx.fetcher.TempDir); len(left) != 0 {
		t.Fatalf("fetches left temp files: %v", left)
	}
}

func TestFetchRefusesOutsideAllowedPrefixes(t *testing.T) {
	fx := newFixture(t)
	host := strings.TrimPrefix(fx.allowed.URL, "http://")
	otherHost := strings.TrimPrefix(fx.other.URL, "http://")
	_, port, _ := strings.Cut(host, ":")
	images := filepath.Join(fx.dir, "images")
	os.Symlink("/etc/passwd", filepath.Join(images, "passwd.raw"))
	os.Symlink(filepath.Join(fx.dir, "secret"), filepath.Join(images, "secret.raw"))
	qemuImgRun(t, "create", "-f", "qcow2", "-b", filepath.Join(fx.dir, "secret"), "-F", "raw", filepath.Join(images, "backed.qcow2"))
	qemuImgRun(t, "create", "-f", "qcow2", "-o", "data_file="+filepath.Join(fx.dir, "secret"), filepath.Join(images, "datafile.qcow2"), "1M")

	for _, tc := range []struct{ name, url, want string }{
		{"other host name", "http://localhost:" + port + "/images/vm.raw", "not under an allowed prefix"},
		{"other port", fx.other.URL + "/images/vm.raw", "not under an allowed prefix"},
		{"other scheme", "https://" + host + "/images/vm.raw", "not under an allowed prefix"},
		{"file outside", "file:///etc/passwd", "not under an allowed prefix"},
		{"file on another host", "file://" + otherHost + images + "/vm.raw", "names host"},
		{"file traversal", "file://" + images + "/../secret", "dot segments"},
		{"http traversal", fx.allowedBase + "../secret", "dot segments"},
		{"percent-encoded traversal", fx.allowedBase + "%2e%2e/secret", "dot segments"},
		{"percent-encoded traversal, upper case", fx.allowedBase + "%2E%2E%2Fsecret", "encoded separator"},
		{"encoded backslash", fx.allowedBase + "..%5csecret", "encoded separator"},
		{"backslash", fx.allowedBase + "..\\secret", "backslash"},
		{"prefix is not a path prefix", "http://" + host + "/images-private/vm.raw", "not under an allowed prefix"},
		{"userinfo naming the allowed host", "http://" + host + "@" + otherHost + "/images/vm.raw", "user info"},
		{"userinfo with credentials", "http://u:p@" + host + "/images/vm.raw", "user info"},
		{"unsupported scheme", "ftp://" + host + "/images/vm.raw", "scheme"},
		{"redirect to another host", fx.allowedBase + "to-other", "redirected"},
		{"redirect outside the prefix", fx.allowedBase + "to-secret", "redirected"},
		{"symlink out of the image dir", "file://" + images + "/passwd.raw", "outside the allowed prefixes"},
		{"symlink to a sibling file", "file://" + images + "/secret.raw", "outside the allowed prefixes"},
		{"qcow2 with a backing file", "file://" + images + "/backed.qcow2", "backing file"},
		{"qcow2 with an external data file", "file://" + images + "/datafile.qcow2", "external data file"},
		{"a directory", "file://" + images + "/", "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, _, err := fx.fetcher.Open(context.Background(), tc.url)
			if err == nil {
				rc.Close()
				t.Fatalf("Open(%s) succeeded", tc.url)
			}
			if !drivers.IsKind(err, drivers.KindInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open(%s) = %v; want KindInvalid saying %q", tc.url, err, tc.want)
			}
		})
	}
	if n := fx.otherHits.Load(); n != 0 {
		t.Fatalf("the disallowed host was asked %d times", n)
	}
}

func TestFetchErrorKinds(t *testing.T) {
	fx := newFixture(t)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	fx.fetcher.AllowedPrefixes = append(fx.fetcher.AllowedPrefixes, deadURL+"/")
	images := "file://" + filepath.Join(fx.dir, "images")
	for _, tc := range []struct {
		name, url string
		maxSize   int64
		kind      drivers.Kind
	}{
		{"http 404", fx.allowedBase + "missing.raw", 0, drivers.KindNotFound},
		{"file missing", images + "/missing.raw", 0, drivers.KindNotFound},
		{"http 502", fx.allowedBase + "broken", 0, drivers.KindUnavailable},
		{"http 403", fx.allowedBase + "forbidden", 0, drivers.KindInvalid},
		{"connection refused", deadURL + "/vm.raw", 0, drivers.KindUnavailable},
		{"raw over the size limit, http", fx.allowedBase + "vm.raw", 1 << 20, drivers.KindInvalid},
		{"raw over the size limit, chunked", fx.allowedBase + "chunked.raw", 1 << 20, drivers.KindInvalid},
		{"raw over the size limit, file", images + "/vm.raw", 1 << 20, drivers.KindInvalid},
		// The qcow2 file is small; its virtual size is not.
		{"qcow2 virtual size over the limit", images + "/vm.qcow2", 2 << 20, drivers.KindInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := *fx.fetcher
			f.MaxSize = tc.maxSize
			rc, _, err := f.Open(context.Background(), tc.url)
			if err == nil {
				rc.Close()
			}
			if !drivers.IsKind(err, tc.kind) {
				t.Fatalf("Open = %v; want %s", err, tc.kind)
			}
		})
	}
	if left, _ := os.ReadDir(fx.fetcher.TempDir); len(left) != 0 {
		t.Fatalf("failed fetches left temp files: %v", left)
	}
}

func TestFetchCancelStopsDownload(t *testing.T) {
	started := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1073741824")
		w.Write(make([]byte, 64<<10))
		w.(http.Flusher).Flush()
		close(started)
		<-r.Context().Done() // a server that stalls until the client leaves
	}))
	defer srv.Close()
	f := &Fetcher{AllowedPrefixes: []string{srv.URL + "/"}, TempDir: t.TempDir()}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()

	begin := time.Now()
	_, _, err := f.Open(ctx, srv.URL+"/big.raw")
	if !drivers.IsKind(err, drivers.KindUnavailable) {
		t.Fatalf("cancelled Open = %v; want KindUnavailable", err)
	}
	if d := time.Since(begin); d > 10*time.Second {
		t.Fatalf("cancelled download took %v to stop", d)
	}
}
