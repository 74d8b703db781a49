package backupstore

import (
	"bytes"
	"context"
	"io"
	"testing"
)

// The benchmarks use the production chunk size and fsync over a 128 MiB
// volume whose every chunk mixes random, text-like and zero 64 KiB blocks,
// so each chunk is compressed and hashed (no chunk is a hole).
const benchVolume = 128 << 20

func benchData() []byte {
	b := make([]byte, benchVolume)
	pattern := volumeImage(3*testChunk, 42)
	for off := 0; off < len(b); off += len(pattern) {
		copy(b[off:], pattern)
	}
	return b
}

func BenchmarkBackup(b *testing.B) {
	data := benchData()
	s := &Store{Dir: b.TempDir()}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		if err := s.Delete(context.Background(), backup1); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Backup(context.Background(), BackupRequest{BackupID: backup1, VolumeID: volA, SizeGB: 1}, bytes.NewReader(data), nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRestore(b *testing.B) {
	data := benchData()
	s := &Store{Dir: b.TempDir()}
	if _, err := s.Backup(context.Background(), BackupRequest{BackupID: backup1, VolumeID: volA, SizeGB: 1}, bytes.NewReader(data), nil); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		if err := s.Restore(context.Background(), backup1, io.Discard, nil); err != nil {
			b.Fatal(err)
		}
	}
}
