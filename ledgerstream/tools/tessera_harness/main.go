// Command tessera_harness appends entries to a Tessera v1.0.4 POSIX log as fast as it can
// accept them, for `ledgerstream bench signer --compare tessera` (docs/benchmarks-signer.md).
//
// The setup is issue 18's: 600-byte entries, batches of 1,024 or 50 ms, an Ed25519
// checkpoint every second, thousands of concurrent adders. An entry counts once its future
// resolved (Tessera has sequenced it and written it to storage). It prints one JSON object.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
)

func main() {
	dir := flag.String("dir", "", "empty directory for the log (required)")
	seconds := flag.Float64("seconds", 20, "measurement window, after -warmup")
	warmup := flag.Float64("warmup", 3, "seconds of adding before the window starts")
	adders := flag.Int("adders", 2048, "concurrent goroutines calling Add")
	size := flag.Int("entry-bytes", 600, "bytes per entry")
	batch := flag.Uint("batch", 1024, "Tessera batch size")
	batchMS := flag.Int("batch-ms", 50, "Tessera batch age")
	checkpointMS := flag.Int("checkpoint-ms", 1000, "checkpoint interval")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "error: -dir is required")
		os.Exit(2)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	skey, _, err := note.GenerateKey(rand.Reader, "ledgerstream-bench/tessera")
	die(err)
	signer, err := note.NewSigner(skey)
	die(err)
	driver, err := posix.New(ctx, posix.Config{Path: *dir})
	die(err)
	opts := tessera.NewAppendOptions().WithCheckpointSigner(signer).
		WithBatching(*batch, time.Duration(*batchMS)*time.Millisecond).
		WithCheckpointInterval(time.Duration(*checkpointMS) * time.Millisecond)
	appender, shutdown, _, err := tessera.NewAppender(ctx, driver, opts)
	die(err)

	var counting atomic.Bool
	var done, failed atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for a := 0; a < *adders; a++ {
		wg.Add(1)
		go func(a int) {
			defer wg.Done()
			buf := make([]byte, *size)
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				copy(buf, fmt.Sprintf("adder %d entry %d ", a, n)) // distinct entries
				if _, err := appender.Add(ctx, tessera.NewEntry(append([]byte(nil), buf...)))(); err != nil {
					failed.Add(1)
					continue
				}
				if counting.Load() {
					done.Add(1)
				}
			}
		}(a)
	}
	time.Sleep(time.Duration(*warmup * float64(time.Second)))
	counting.Store(true)
	start := time.Now()
	time.Sleep(time.Duration(*seconds * float64(time.Second)))
	counting.Store(false)
	elapsed := time.Since(start).Seconds()
	n := done.Load()
	close(stop)
	wg.Wait()
	_ = shutdown(ctx)
	out := map[string]any{
		"tessera": "v1.0.4", "driver": "posix", "adders": *adders, "entry_bytes": *size, "batch": *batch,
		"batch_ms": *batchMS, "checkpoint_ms": *checkpointMS, "seconds": elapsed, "entries": n,
		"entries_per_s": float64(n) / elapsed, "failed": failed.Load(),
	}
	die(json.NewEncoder(os.Stdout).Encode(out))
}

func die(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
