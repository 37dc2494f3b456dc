// Command tlogclient is an independent client of a ledgerstream tile directory
// (C2SP tlog-tiles), built on golang.org/x/mod/sumdb/tlog. The tests use it to check that
// the tiles, entry bundles and proofs written by ledgerstream/core/tiles.py are what a
// third-party implementation expects.
//
//	tlogclient -prefix http://127.0.0.1:PORT/tlog/ -size N -root HEX \
//	    [-index 0,5,9] [-old-size M -old-root HEX] [-height 8]
//	tlogclient -prefix ... -note-vkey VKEY [-cosigner-vkey VKEY ...] [-index ...] [-old-size ...]
//
// With -note-vkey (repeatable: the log's Ed25519 signed-note keys) the trusted (size, root)
// come from the log's "checkpoint" file instead of -size/-root: it must open with
// golang.org/x/mod/sumdb/note, signed by every -note-vkey and every -cosigner-vkey (witness
// cosignatures, c2sp.org/tlog-cosignature, checked with transparency-dev/formats' note
// verifier), and its first three lines give the tree.
//
// $TLOG_BEARER_TOKEN, if set, is sent as "Authorization: Bearer ..." (the dashboard serves
// the tiles behind its token).
// The prefix is an HTTP(S) URL or a local directory. The (size, root) pair is trusted: it
// would come from a verified checkpoint. Every tile is authenticated against it by
// tlog.TileHashReader; each -index is proved with tlog.ProveRecord and checked with
// tlog.CheckRecord against tlog.RecordHash of its entry-bundle data; -old-size is proved
// with tlog.ProveTree and checked with tlog.CheckTree against -old-root.
//
// Output: one JSON object on stdout. Exit status 0 if every check passed, 1 if one failed
// (including a missing or inconsistent tile), 2 for bad usage.
package main

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	fmtnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

var errNotFound = errors.New("not found")

// fetcher reads one file of the log by its path relative to the prefix.
type fetcher struct {
	prefix string
	bearer string
	client *http.Client
	mu     sync.Mutex
	paths  []string
}

func (f *fetcher) get(path string) ([]byte, error) {
	f.mu.Lock()
	f.paths = append(f.paths, path)
	f.mu.Unlock()
	if !strings.HasPrefix(f.prefix, "http://") && !strings.HasPrefix(f.prefix, "https://") {
		data, err := os.ReadFile(filepath.Join(f.prefix, filepath.FromSlash(path)))
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", path, errNotFound)
		}
		return data, err
	}
	req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(f.prefix, "/")+"/"+path, nil)
	if err != nil {
		return nil, err
	}
	if f.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+f.bearer)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("%s: %w", path, errNotFound)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %s", path, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// c2spPath is the C2SP tlog-tiles path of a tlog.Tile: tlog's own Path is
// tile/H/L/N[.p/W]; C2SP has no height element (the height is always 8 there).
func c2spPath(t tlog.Tile) string {
	return "tile/" + strings.TrimPrefix(t.Path(), fmt.Sprintf("tile/%d/", t.H))
}

// entriesPath is tile/entries/N[.p/W] for the level-0 tile t.
func entriesPath(t tlog.Tile) string {
	return "tile/entries/" + strings.TrimPrefix(t.Path(), fmt.Sprintf("tile/%d/0/", t.H))
}

// getPartial fetches a possibly partial file; when a partial file is gone (logs may delete
// it once the full one exists) it falls back to the full file, as C2SP allows.
func (f *fetcher) getPartial(partial, full string, partialWidth bool) ([]byte, bool, error) {
	data, err := f.get(partial)
	if err == nil || !partialWidth || !errors.Is(err, errNotFound) {
		return data, false, err
	}
	data, err = f.get(full)
	return data, true, err
}

// tileReader implements tlog.TileReader over the fetcher.
type tileReader struct {
	f      *fetcher
	height int
}

func (r *tileReader) Height() int { return r.height }

func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		full := t
		full.W = 1 << uint(t.H)
		data, fellBack, err := r.f.getPartial(c2spPath(t), c2spPath(full), t.W < full.W)
		if err != nil {
			return nil, err
		}
		if fellBack {
			if len(data) != full.W*tlog.HashSize {
				return nil, fmt.Errorf("%s: %d bytes, want %d", c2spPath(full), len(data), full.W*tlog.HashSize)
			}
			data = data[:t.W*tlog.HashSize]
		}
		if len(data) != t.W*tlog.HashSize {
			return nil, fmt.Errorf("%s: %d bytes, want %d", c2spPath(t), len(data), t.W*tlog.HashSize)
		}
		out[i] = data
	}
	return out, nil
}

func (r *tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

// entry returns the data of leaf index in the tree of size n from its entry bundle.
func (r *tileReader) entry(index, n int64) ([]byte, error) {
	h := uint(r.height)
	bundle := index >> h
	w := n - bundle<<h
	if w > 1<<h {
		w = 1 << h
	}
	t := tlog.Tile{H: r.height, L: 0, N: bundle, W: int(w)}
	full := t
	full.W = 1 << h
	data, _, err := r.f.getPartial(entriesPath(t), entriesPath(full), t.W < full.W)
	if err != nil {
		return nil, err
	}
	want := index - bundle<<h
	for i := int64(0); len(data) > 0; i++ {
		if len(data) < 2 {
			return nil, fmt.Errorf("%s: truncated length", entriesPath(t))
		}
		size := int(binary.BigEndian.Uint16(data))
		if len(data) < 2+size {
			return nil, fmt.Errorf("%s: truncated entry %d", entriesPath(t), i)
		}
		if i == want {
			return data[2 : 2+size], nil
		}
		data = data[2+size:]
	}
	return nil, fmt.Errorf("%s: no entry %d", entriesPath(t), want)
}

type inclusionResult struct {
	Index    int64    `json:"index"`
	LeafData string   `json:"leaf_data,omitempty"`
	LeafHash string   `json:"leaf_hash,omitempty"`
	Proof    []string `json:"proof"`
	OK       bool     `json:"ok"`
	Error    string   `json:"error,omitempty"`
}

type consistencyResult struct {
	OldSize      int64    `json:"old_size"`
	OldRootTiles string   `json:"old_root_from_tiles,omitempty"`
	Proof        []string `json:"proof"`
	OK           bool     `json:"ok"`
	Error        string   `json:"error,omitempty"`
}

type checkpointInfo struct {
	Origin string `json:"origin"`
	Size   int64  `json:"size"`
	Root   string `json:"root"`
	Error  string `json:"error,omitempty"`
}

type noteResult struct {
	VerifiedBy []string `json:"verified_by"`
	Size       int64    `json:"size,omitempty"`
	Root       string   `json:"root,omitempty"`
	Error      string   `json:"error,omitempty"`
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// openNote verifies the log's checkpoint note: every given key must have a valid signature
// on it (note.Open already fails on a known key's bad signature).
func openNote(data []byte, noteVkeys, cosignerVkeys []string) (*note.Note, []string, error) {
	var verifiers []note.Verifier
	for _, k := range noteVkeys {
		v, err := note.NewVerifier(k)
		if err != nil {
			return nil, nil, fmt.Errorf("-note-vkey %q: %v", k, err)
		}
		verifiers = append(verifiers, v)
	}
	for _, k := range cosignerVkeys {
		v, err := fmtnote.NewVerifierForCosignatureV1(k)
		if err != nil {
			return nil, nil, fmt.Errorf("-cosigner-vkey %q: %v", k, err)
		}
		verifiers = append(verifiers, v)
	}
	n, err := note.Open(data, note.VerifierList(verifiers...))
	if err != nil {
		return nil, nil, err
	}
	var names []string
	for _, v := range verifiers {
		found := false
		for _, s := range n.Sigs {
			if s.Name == v.Name() && s.Hash == v.KeyHash() {
				found = true
			}
		}
		if !found {
			return nil, nil, fmt.Errorf("no valid signature from %s+%08x", v.Name(), v.KeyHash())
		}
		names = append(names, v.Name())
	}
	return n, names, nil
}

type report struct {
	GoVersion    string             `json:"go_version"`
	TlogModule   string             `json:"tlog_module"`
	Size         int64              `json:"size"`
	Root         string             `json:"root"`
	RootFromTile string             `json:"root_from_tiles,omitempty"`
	RootOK       bool               `json:"root_ok"`
	RootError    string             `json:"root_error,omitempty"`
	Checkpoint   *checkpointInfo    `json:"checkpoint,omitempty"`
	Note         *noteResult        `json:"note,omitempty"`
	Inclusion    []inclusionResult  `json:"inclusion"`
	Consistency  *consistencyResult `json:"consistency,omitempty"`
	Fetched      []string           `json:"fetched"`
	OK           bool               `json:"ok"`
}

func hexes(hs []tlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = hex.EncodeToString(h[:])
	}
	return out
}

func parseHash(s string) (tlog.Hash, error) {
	var h tlog.Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != tlog.HashSize {
		return h, fmt.Errorf("want %d hex-encoded bytes, got %q", tlog.HashSize, s)
	}
	copy(h[:], b)
	return h, nil
}

func usage(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "tlogclient: "+format+"\n", args...)
	os.Exit(2)
}

func moduleVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "golang.org/x/mod" {
				return dep.Path + "@" + dep.Version
			}
		}
	}
	return "golang.org/x/mod@unknown"
}

func readCheckpoint(f *fetcher) *checkpointInfo {
	data, err := f.get("checkpoint")
	if err != nil {
		return &checkpointInfo{Error: err.Error()}
	}
	lines := strings.SplitN(string(data), "\n", 4)
	if len(lines) < 4 {
		return &checkpointInfo{Error: "fewer than three lines"}
	}
	size, err1 := strconv.ParseInt(lines[1], 10, 64)
	root, err2 := base64.StdEncoding.DecodeString(lines[2])
	if err1 != nil || err2 != nil || len(root) != tlog.HashSize {
		return &checkpointInfo{Error: "malformed size or root line"}
	}
	return &checkpointInfo{Origin: lines[0], Size: size, Root: hex.EncodeToString(root)}
}

func main() {
	prefix := flag.String("prefix", "", "log prefix: http(s) URL or directory (required)")
	size := flag.Int64("size", -1, "trusted tree size (required, >= 1)")
	rootHex := flag.String("root", "", "trusted root hash at -size, hex (required)")
	indexList := flag.String("index", "", "comma-separated leaf indexes to prove")
	oldSize := flag.Int64("old-size", 0, "older tree size to prove consistent with -size (0: none)")
	oldRootHex := flag.String("old-root", "", "root hash at -old-size, hex")
	height := flag.Int("height", 8, "tile height (C2SP: 8)")
	var noteVkeys, cosignerVkeys multiFlag
	flag.Var(&noteVkeys, "note-vkey", "the log's Ed25519 note vkey (repeatable): trust the verified checkpoint file")
	flag.Var(&cosignerVkeys, "cosigner-vkey", "a witness's cosignature/v1 vkey that must have cosigned (repeatable)")
	flag.Parse()
	f := &fetcher{prefix: *prefix, bearer: os.Getenv("TLOG_BEARER_TOKEN"), client: &http.Client{Timeout: 30 * time.Second}}
	var noteRes *noteResult
	if len(noteVkeys) > 0 {
		noteRes = &noteResult{VerifiedBy: []string{}}
		data, err := f.get("checkpoint")
		var n *note.Note
		if err == nil {
			n, noteRes.VerifiedBy, err = openNote(data, noteVkeys, cosignerVkeys)
		}
		if err == nil {
			lines := strings.SplitN(n.Text, "\n", 4)
			s, err1 := strconv.ParseInt(lines[1], 10, 64)
			r, err2 := base64.StdEncoding.DecodeString(lines[2])
			if len(lines) < 4 || err1 != nil || err2 != nil || len(r) != tlog.HashSize {
				err = errors.New("malformed checkpoint text")
			} else {
				*size, *rootHex = s, hex.EncodeToString(r)
				noteRes.Size, noteRes.Root = s, *rootHex
			}
		}
		if err != nil {
			noteRes.Error = err.Error()
			out, _ := json.MarshalIndent(report{GoVersion: runtime.Version(), TlogModule: moduleVersion(),
				Note: noteRes, Inclusion: []inclusionResult{}, Fetched: f.paths}, "", "  ")
			fmt.Println(string(out))
			os.Exit(1)
		}
	}
	if *prefix == "" || *size < 1 || *rootHex == "" || flag.NArg() != 0 {
		usage("need -prefix, and -size >= 1 and -root or -note-vkey")
	}
	if *height < 1 || *height > 30 {
		usage("bad -height %d", *height)
	}
	root, err := parseHash(*rootHex)
	if err != nil {
		usage("-root: %v", err)
	}
	var indexes []int64
	if *indexList != "" {
		for _, s := range strings.Split(*indexList, ",") {
			i, err := strconv.ParseInt(s, 10, 64)
			if err != nil || i < 0 {
				usage("bad index %q", s)
			}
			indexes = append(indexes, i)
		}
	}
	var oldRoot tlog.Hash
	if *oldSize != 0 {
		if *oldSize < 0 || *oldSize > *size {
			usage("-old-size must be in [1, -size]")
		}
		if oldRoot, err = parseHash(*oldRootHex); err != nil {
			usage("-old-root: %v", err)
		}
	}

	tr := &tileReader{f: f, height: *height}
	tree := tlog.Tree{N: *size, Hash: root}
	thr := tlog.TileHashReader(tree, tr)

	rep := report{GoVersion: runtime.Version(), TlogModule: moduleVersion(), Size: *size,
		Root: *rootHex, Inclusion: []inclusionResult{}}
	rep.Checkpoint = readCheckpoint(f)
	rep.Note = noteRes
	ok := true

	// The tree hash from the tiles (TileHashReader also authenticates the tiles it reads
	// against the trusted root, so a mismatch shows up as an error here).
	if th, err := tlog.TreeHash(*size, thr); err != nil {
		rep.RootError = err.Error()
		ok = false
	} else {
		rep.RootFromTile = hex.EncodeToString(th[:])
		rep.RootOK = th == root
		ok = ok && rep.RootOK
	}

	for _, i := range indexes {
		res := inclusionResult{Index: i, Proof: []string{}}
		func() {
			if i >= *size {
				res.Error = "index not below size"
				return
			}
			data, err := tr.entry(i, *size)
			if err != nil {
				res.Error = err.Error()
				return
			}
			leaf := tlog.RecordHash(data) // SHA-256(0x00 || data)
			res.LeafData = hex.EncodeToString(data)
			res.LeafHash = hex.EncodeToString(leaf[:])
			stored, err := thr.ReadHashes([]int64{tlog.StoredHashIndex(0, i)})
			if err != nil {
				res.Error = err.Error()
				return
			}
			if stored[0] != leaf {
				res.Error = "entry bundle data does not hash to the level-0 tile's leaf hash"
				return
			}
			proof, err := tlog.ProveRecord(*size, i, thr)
			if err != nil {
				res.Error = err.Error()
				return
			}
			res.Proof = hexes(proof)
			if err := tlog.CheckRecord(proof, *size, root, i, leaf); err != nil {
				res.Error = err.Error()
				return
			}
			res.OK = true
		}()
		ok = ok && res.OK
		rep.Inclusion = append(rep.Inclusion, res)
	}

	if *oldSize != 0 {
		res := &consistencyResult{OldSize: *oldSize, Proof: []string{}}
		func() {
			if th, err := tlog.TreeHash(*oldSize, thr); err == nil {
				res.OldRootTiles = hex.EncodeToString(th[:])
			}
			proof, err := tlog.ProveTree(*size, *oldSize, thr)
			if err != nil {
				res.Error = err.Error()
				return
			}
			res.Proof = hexes(proof)
			if err := tlog.CheckTree(proof, *size, root, *oldSize, oldRoot); err != nil {
				res.Error = err.Error()
				return
			}
			res.OK = true
		}()
		ok = ok && res.OK
		rep.Consistency = res
	}

	rep.Fetched = f.paths
	rep.OK = ok
	out, _ := json.MarshalIndent(rep, "", "  ")
	fmt.Println(string(out))
	if !ok {
		os.Exit(1)
	}
}
