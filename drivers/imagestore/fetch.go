package imagestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ember-storage/ember/drivers"
)

// DefaultMaxSize is the largest volume the contract allows (65536 GiB).
// Callers should set MaxSize to the target volume's size.
const DefaultMaxSize = 65536 * drivers.GiB

// maxRedirects bounds a redirect chain; each hop is checked against the
// allowed prefixes as the first URL is.
const maxRedirects = 5

// transport is shared so that connections are reused; the environment's
// proxy settings apply (loopback is never proxied).
var transport = func() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = time.Minute
	return t
}()

// Fetcher opens the image a volume is created from.
type Fetcher struct {
	// AllowedPrefixes are the URLs images may come from, e.g.
	// "https://images.example.com/public/" or "file:///var/lib/ember/images/".
	// A URL is allowed when it is at or under one of them (same scheme,
	// host and port, path on a segment boundary). Empty allows nothing.
	AllowedPrefixes []string
	// MaxSize bounds the download and the image's virtual size; zero means
	// DefaultMaxSize.
	MaxSize int64
	// TempDir holds downloads and conversions; empty means os.TempDir().
	TempDir string
	// Executor runs qemu-img on this host; nil means a LocalExecutor.
	Executor drivers.Executor
	// Images, when set, is the image store: a file:// image that resolves
	// inside its Dir is opened only when Project may read it
	// (Store.Readable), else the error wraps ErrForbidden. Images outside
	// the store, at prefixes the operator allowed, are readable by all.
	Images *Store
	// Project is the project asking, set per request.
	Project string
}

const fetchOp = "fetch image"

// Open returns the image at rawURL as raw bytes and their length. A qcow2
// image (known by its magic) is converted to raw first; an http(s) image is
// downloaded into TempDir first, as Cinder's fetch_to_raw does. Temp files
// are unlinked before Open returns: closing the reader frees them. qemu-img
// runs through Executor, which must be local: it reads these temp files.
//
// Errors: a URL outside the allowed prefixes (or a redirect out of them), an
// image too large or unsafe to convert: KindInvalid; no such image:
// KindNotFound; network failures and 5xx answers: KindUnavailable.
func (f *Fetcher) Open(ctx context.Context, rawURL string) (io.ReadCloser, int64, error) {
	loc, err := f.check(rawURL)
	if err != nil {
		return nil, 0, err
	}
	var file *os.File
	if loc.scheme == "file" {
		file, err = f.openFile(loc)
	} else {
		file, err = f.download(ctx, loc, rawURL)
	}
	if err != nil {
		return nil, 0, err
	}
	if loc.scheme != "file" {
		// The download's name goes once it is converted or handed out:
		// an open file outlives its name, and nothing outlives the reader.
		defer os.Remove(file.Name())
	}
	raw, size, err := f.toRaw(ctx, file)
	if err != nil {
		return nil, 0, drivers.Wrap(drivers.KindOf(err), fetchOp+" "+loc.String(), err)
	}
	return raw, size, nil
}

func (f *Fetcher) maxSize() int64 {
	if f.MaxSize > 0 {
		return f.MaxSize
	}
	return DefaultMaxSize
}

func (f *Fetcher) tempDir() string {
	if f.TempDir != "" {
		return f.TempDir
	}
	return os.TempDir()
}

// check refuses any URL that is not at or under an allowed prefix.
func (f *Fetcher) check(rawURL string) (location, error) {
	loc, err := f.allowed(rawURL)
	if err != nil {
		return location{}, drivers.Wrap(drivers.KindInvalid, fetchOp, err)
	}
	return loc, nil
}

func (f *Fetcher) allowed(rawURL string) (location, error) {
	loc, _, err := parseLocation(rawURL)
	if err != nil {
		return location{}, err
	}
	for _, p := range f.AllowedPrefixes {
		pl, pu, err := parseLocation(p)
		if err != nil || pu.RawQuery != "" {
			continue // a bad prefix allows nothing
		}
		if loc.within(pl) {
			return loc, nil
		}
	}
	return location{}, fmt.Errorf("%s is not under an allowed prefix", loc)
}

// openFile opens a file:// image. Symlinks are resolved and the target must
// still be under an allowed prefix, so a link in an image directory cannot
// reach /etc/shadow.
func (f *Fetcher) openFile(loc location) (*os.File, error) {
	op := fetchOp + " " + loc.String()
	real, err := filepath.EvalSymlinks(loc.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, drivers.Errorf(drivers.KindNotFound, op, "no such image")
	}
	if err != nil {
		return nil, drivers.Wrap(drivers.KindBackend, op, err)
	}
	if !f.resolvedAllowed(real) {
		return nil, drivers.Errorf(drivers.KindInvalid, op, "resolves to %s, outside the allowed prefixes", real)
	}
	// The owner check reads the resolved path, so that a link elsewhere
	// cannot reach another project's image.
	if f.Images.holds(real) {
		if err := f.Images.Readable(real, f.Project); err != nil {
			return nil, err
		}
	}
	file, err := os.Open(real)
	if err != nil {
		return nil, drivers.Wrap(drivers.KindBackend, op, err)
	}
	st, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, drivers.Wrap(drivers.KindBackend, op, err)
	}
	if !st.Mode().IsRegular() || st.Size() > f.maxSize() {
		file.Close()
		if !st.Mode().IsRegular() {
			return nil, drivers.Errorf(drivers.KindInvalid, op, "not a regular file")
		}
		return nil, drivers.Errorf(drivers.KindInvalid, op, "image of %d bytes exceeds the limit of %d", st.Size(), f.maxSize())
	}
	return file, nil
}

func (f *Fetcher) resolvedAllowed(real string) bool {
	for _, p := range f.AllowedPrefixes {
		pl, _, err := parseLocation(p)
		if err != nil || pl.scheme != "file" {
			continue
		}
		dir, err := filepath.EvalSymlinks(pl.path)
		if err != nil {
			continue
		}
		if (location{scheme: "file", path: real}).within(location{scheme: "file", path: dir}) {
			return true
		}
	}
	return false
}

// download spools an http(s) image into a temp file.
func (f *Fetcher) download(ctx context.Context, loc location, rawURL string) (*os.File, error) {
	op := fetchOp + " " + loc.String()
	client := &http.Client{
		Transport: transport,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > maxRedirects {
				return drivers.Errorf(drivers.KindInvalid, op, "more than %d redirects", maxRedirects)
			}
			if _, err := f.allowed(req.URL.String()); err != nil {
				return drivers.Errorf(drivers.KindInvalid, op, "redirected: %w", err)
			}
			return nil
		},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, drivers.Errorf(drivers.KindInvalid, op, "bad request: %v", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		var de *drivers.Error
		if errors.As(err, &de) {
			return nil, de
		}
		// url.Error repeats the URL with its query; keep only the cause.
		return nil, drivers.Wrap(drivers.KindUnavailable, op, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	if err := statusError(resp.StatusCode); err != nil {
		return nil, drivers.Wrap(drivers.KindOf(err), op, err)
	}
	if resp.ContentLength > f.maxSize() {
		return nil, drivers.Errorf(drivers.KindInvalid, op, "image of %d bytes exceeds the limit of %d", resp.ContentLength, f.maxSize())
	}

	file, err := os.CreateTemp(f.tempDir(), "ember-image-*")
	if err != nil {
		return nil, drivers.Wrap(drivers.KindBackend, op, err)
	}
	n, err := copySparse(ctx, file, io.LimitReader(resp.Body, f.maxSize()+1))
	switch {
	case err != nil:
		err = drivers.Wrap(drivers.KindUnavailable, op, fmt.Errorf("download: %w", err))
	case n > f.maxSize():
		err = drivers.Errorf(drivers.KindInvalid, op, "image exceeds the limit of %d bytes", f.maxSize())
	case resp.ContentLength >= 0 && n != resp.ContentLength:
		err = drivers.Errorf(drivers.KindUnavailable, op, "download ended after %d of %d bytes", n, resp.ContentLength)
	}
	if err != nil {
		file.Close()
		os.Remove(file.Name())
		return nil, err
	}
	return file, nil
}

// statusError classifies an HTTP status: only 200 is an image.
func statusError(code int) error {
	switch {
	case code == http.StatusOK:
		return nil
	case code == http.StatusNotFound || code == http.StatusGone:
		return drivers.Errorf(drivers.KindNotFound, "", "HTTP %d: no such image", code)
	case code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout:
		return drivers.Errorf(drivers.KindUnavailable, "", "HTTP %d", code)
	default:
		return drivers.Errorf(drivers.KindInvalid, "", "HTTP %d", code)
	}
}

// toRaw returns file itself when it holds a raw image, or a raw conversion
// of the qcow2 image it holds. It owns file: closed on every path but the
// one that returns it.
func (f *Fetcher) toRaw(ctx context.Context, file *os.File) (io.ReadCloser, int64, error) {
	qcow2, err := isQcow2(file)
	if err != nil || !qcow2 {
		return rawFile(file, err)
	}
	defer file.Close()
	vsize, err := checkQcow2Header(file)
	if err != nil {
		return nil, 0, drivers.Wrap(drivers.KindInvalid, "", err)
	}
	if vsize > f.maxSize() {
		return nil, 0, drivers.Errorf(drivers.KindInvalid, "", "virtual size %d exceeds the limit of %d", vsize, f.maxSize())
	}
	src := file.Name()
	q := qemuImg{ex: f.Executor}
	if q.ex == nil {
		q.ex = drivers.LocalExecutor{}
	}
	ii, err := q.info(ctx, src, FormatQcow2)
	if err != nil {
		return nil, 0, drivers.Wrap(commandKind(err), "", err)
	}
	if ii.BackingFilename != "" || ii.FormatSpecific.Data.DataFile != "" || ii.VirtualSize != vsize {
		return nil, 0, drivers.Errorf(drivers.KindInvalid, "", "qcow2 image refers to other files or disagrees with its header")
	}
	out, err := os.CreateTemp(f.tempDir(), "ember-image-*.raw")
	if err != nil {
		return nil, 0, drivers.Wrap(drivers.KindBackend, "", err)
	}
	out.Close()
	defer os.Remove(out.Name())
	if err := q.convert(ctx, src, FormatQcow2, out.Name(), FormatRaw); err != nil {
		return nil, 0, drivers.Wrap(commandKind(err), "", err)
	}
	converted, err := os.Open(out.Name())
	return rawFile(converted, err)
}

// rawFile returns file from its start, with its size.
func rawFile(file *os.File, err error) (io.ReadCloser, int64, error) {
	if err == nil {
		var st os.FileInfo
		if st, err = file.Stat(); err == nil {
			if _, err = file.Seek(0, io.SeekStart); err == nil {
				return file, st.Size(), nil
			}
		}
	}
	if file != nil {
		file.Close()
	}
	return nil, 0, drivers.Wrap(drivers.KindBackend, "", err)
}
