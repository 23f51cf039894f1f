// mkimage writes an OCI image archive that containerd imports with
// `ctr -n k8s.io images import` (no registry, no container engine), or the
// same image as an OCI image layout directory, which crane pushes to a
// registry as it is.
//
//	mkimage (-o OUT.tar | -layout DIR) -name cafe.local/testapp:v1 -entrypoint /testapp \
//	    [-cmd ARG]... [-env K=V]... [-user 65532:65532] [-port 8080] \
//	    [-filler-bytes N -filler-seed SEED [-filler-path /srv/assets.bin]] \
//	    FILE=/path/in/image[:MODE]...
//
// The first layer holds the files given, /etc/passwd and /etc/group with the
// users root and nonroot (65532), and an empty /tmp. With -filler-bytes, a
// second, gzip-compressed layer holds one file of N pseudo-random bytes
// (ChaCha8 seeded with SEED): incompressible, so the image is as large to
// pull as it looks, and the same SEED gives the same bytes. Every timestamp
// is the epoch, so the same inputs give the same image digest.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    map[string]string `json:"platform,omitempty"`
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func hexDigest(h hash.Hash) string { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }

// blob is one content-addressed file of the image: in memory, or (the
// filler layer) in a temporary file.
type blob struct {
	digest string
	size   int64
	data   []byte
	file   string
}

func memoryBlob(data []byte) blob {
	return blob{digest: digest(data), size: int64(len(data)), data: data}
}

func (b blob) open() io.ReadCloser {
	if b.file == "" {
		return io.NopCloser(bytes.NewReader(b.data))
	}
	f, err := os.Open(b.file)
	if err != nil {
		fail("%v", err)
	}
	return f
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "mkimage: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	out := flag.String("o", "", "the archive to write")
	layout := flag.String("layout", "", "the OCI image layout directory to write instead of an archive")
	fillerBytes := flag.Int64("filler-bytes", 0, "a second layer of this many pseudo-random bytes")
	fillerSeed := flag.String("filler-seed", "", "the seed of the filler's bytes")
	fillerPath := flag.String("filler-path", "/srv/assets.bin", "the filler's path in the image")
	name := flag.String("name", "", "the image reference, e.g. cafe.local/testapp:v1")
	entrypoint := flag.String("entrypoint", "", "the entrypoint")
	user := flag.String("user", "", "uid:gid the image runs as")
	port := flag.String("port", "", "a TCP port the image exposes")
	var cmd, envs list
	flag.Var(&cmd, "cmd", "an argument of the image's command (repeatable)")
	flag.Var(&envs, "env", "K=V in the image's environment (repeatable)")
	flag.Parse()
	if (*out == "") == (*layout == "") || *name == "" || *entrypoint == "" {
		fail("one of -o and -layout, -name and -entrypoint are required")
	}
	if *fillerBytes > 0 && *fillerSeed == "" {
		fail("-filler-bytes needs -filler-seed")
	}
	tag := (*name)[strings.LastIndex(*name, ":")+1:]
	dest := *out
	if dest == "" {
		dest = *layout
	}

	files := memoryBlob(buildLayer(flag.Args()))
	layers := []descriptor{{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: files.digest, Size: files.size}}
	diffIDs := []string{files.digest}
	blobs := []blob{files}
	if *fillerBytes > 0 {
		filler, diffID := fillerLayer(filepath.Dir(filepath.Clean(dest)), *fillerBytes, *fillerSeed, *fillerPath)
		defer os.Remove(filler.file)
		layers = append(layers, descriptor{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: filler.digest, Size: filler.size})
		diffIDs = append(diffIDs, diffID)
		blobs = append(blobs, filler)
	}
	config := map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      time.Unix(0, 0).UTC().Format(time.RFC3339),
		"config": map[string]any{
			"Entrypoint": []string{*entrypoint},
			"Cmd":        []string(cmd),
			"Env":        append([]string{"PATH=/"}, envs...),
			"User":       *user,
			"WorkingDir": "/",
			"ExposedPorts": func() map[string]any {
				if *port == "" {
					return nil
				}
				return map[string]any{*port + "/tcp": map[string]any{}}
			}(),
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	}
	configJSON, _ := json.Marshal(config)
	manifest := map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: digest(configJSON), Size: int64(len(configJSON))},
		"layers":        layers,
	}
	manifestJSON, _ := json.Marshal(manifest)
	index := map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests": []descriptor{{
			MediaType: "application/vnd.oci.image.manifest.v1+json",
			Digest:    digest(manifestJSON),
			Size:      int64(len(manifestJSON)),
			Platform:  map[string]string{"architecture": "amd64", "os": "linux"},
			Annotations: map[string]string{
				"io.containerd.image.name":          *name,
				"org.opencontainers.image.ref.name": tag,
			},
		}},
	}
	indexJSON, _ := json.Marshal(index)

	blobs = append(blobs, memoryBlob(configJSON), memoryBlob(manifestJSON))
	layoutJSON := []byte(`{"imageLayoutVersion":"1.0.0"}`)
	if *layout != "" {
		writeLayout(*layout, layoutJSON, indexJSON, blobs)
	} else {
		writeArchive(*out, layoutJSON, indexJSON, blobs)
	}
}

// writeArchive writes the image layout as one tar archive.
func writeArchive(out string, layoutJSON, indexJSON []byte, blobs []blob) {
	f, err := os.Create(out)
	if err != nil {
		fail("%v", err)
	}
	w := tar.NewWriter(f)
	put := func(name string, b blob) {
		header := &tar.Header{Name: name, Mode: 0o644, Size: b.size, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if err := w.WriteHeader(header); err != nil {
			fail("%v", err)
		}
		r := b.open()
		defer r.Close()
		if _, err := io.Copy(w, r); err != nil {
			fail("%s: %v", out, err)
		}
	}
	put("oci-layout", memoryBlob(layoutJSON))
	put("index.json", memoryBlob(indexJSON))
	for _, b := range blobs {
		put("blobs/sha256/"+strings.TrimPrefix(b.digest, "sha256:"), b)
	}
	if err := w.Close(); err != nil {
		fail("%v", err)
	}
	if err := f.Close(); err != nil {
		fail("%v", err)
	}
}

// writeLayout writes the image layout as a directory (which must not exist).
func writeLayout(dir string, layoutJSON, indexJSON []byte, blobs []blob) {
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		fail("%v", err)
	}
	write := func(name string, b blob) {
		if b.file != "" {
			if err := os.Rename(b.file, name); err != nil {
				fail("%v", err)
			}
			return
		}
		if err := os.WriteFile(name, b.data, 0o644); err != nil {
			fail("%v", err)
		}
	}
	write(filepath.Join(dir, "oci-layout"), memoryBlob(layoutJSON))
	write(filepath.Join(dir, "index.json"), memoryBlob(indexJSON))
	for _, b := range blobs {
		write(filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(b.digest, "sha256:")), b)
	}
}

// fillerLayer writes, into a temporary file in dir, a gzip-compressed layer
// holding one file of size pseudo-random bytes (ChaCha8 seeded with seed) at
// dst. Returns the compressed blob and the uncompressed layer's digest (its
// diff ID).
func fillerLayer(dir string, size int64, seed, dst string) (blob, string) {
	f, err := os.CreateTemp(dir, ".filler-*")
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err != nil {
		fail("%v", err)
	}
	compressed, uncompressed := sha256.New(), sha256.New()
	counted := &countingWriter{w: io.MultiWriter(f, compressed)}
	// BestSpeed: random bytes do not compress, and the best level takes five
	// times as long to find that out.
	zw, _ := gzip.NewWriterLevel(counted, gzip.BestSpeed)
	tw := tar.NewWriter(io.MultiWriter(zw, uncompressed))
	dst = strings.TrimPrefix(path.Clean(dst), "/")
	var dirs []string
	for d := path.Dir(dst); d != "."; d = path.Dir(d) {
		dirs = append([]string{d + "/"}, dirs...)
	}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}); err != nil {
			fail("%v", err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: dst, Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}); err != nil {
		fail("%v", err)
	}
	key := sha256.Sum256([]byte("cafe-operator filler: " + seed))
	if _, err := io.CopyN(tw, rand.NewChaCha8(key), size); err != nil {
		fail("the filler layer: %v", err)
	}
	if err := tw.Close(); err != nil {
		fail("%v", err)
	}
	if err := zw.Close(); err != nil {
		fail("%v", err)
	}
	if err := f.Close(); err != nil {
		fail("%v", err)
	}
	return blob{digest: hexDigest(compressed), size: counted.n, file: f.Name()}, hexDigest(uncompressed)
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// buildLayer tars the files given as SRC=/DST[:MODE], with their parent
// directories, /etc/passwd, /etc/group and /tmp.
func buildLayer(specs []string) []byte {
	files := map[string][]byte{
		"etc/passwd": []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"),
		"etc/group":  []byte("root:x:0:\nnonroot:x:65532:\n"),
	}
	modes := map[string]int64{"etc/passwd": 0o644, "etc/group": 0o644}
	for _, spec := range specs {
		src, dst, ok := strings.Cut(spec, "=")
		if !ok {
			fail("%q is not SRC=/DST[:MODE]", spec)
		}
		mode := int64(0o755)
		if d, m, ok := strings.Cut(dst, ":"); ok {
			parsed, err := strconv.ParseInt(m, 8, 64)
			if err != nil {
				fail("%q: the mode must be octal", spec)
			}
			dst, mode = d, parsed
		}
		data, err := os.ReadFile(src)
		if err != nil {
			fail("%v", err)
		}
		dst = strings.TrimPrefix(path.Clean(dst), "/")
		files[dst], modes[dst] = data, mode
	}
	dirs := map[string]bool{"tmp": true}
	for name := range files {
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	var names []string
	for d := range dirs {
		names = append(names, d+"/")
	}
	for f := range files {
		names = append(names, f)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	for _, name := range names {
		header := &tar.Header{Name: name, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if strings.HasSuffix(name, "/") {
			header.Typeflag, header.Mode = tar.TypeDir, 0o755
			if name == "tmp/" {
				header.Mode = 0o1777
			}
		} else {
			header.Typeflag, header.Mode, header.Size = tar.TypeReg, modes[name], int64(len(files[name]))
		}
		if err := w.WriteHeader(header); err != nil {
			fail("%v", err)
		}
		if header.Typeflag == tar.TypeReg {
			w.Write(files[name])
		}
	}
	if err := w.Close(); err != nil {
		fail("%v", err)
	}
	return buf.Bytes()
}
