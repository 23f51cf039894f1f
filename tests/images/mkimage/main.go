// mkimage writes a single-layer OCI image archive that containerd imports
// with `ctr -n k8s.io images import` (no registry, no container engine).
//
//	mkimage -o OUT.tar -name cafe.local/testapp:v1 -entrypoint /testapp \
//	    [-cmd ARG]... [-env K=V]... [-user 65532:65532] [-port 8080] \
//	    FILE=/path/in/image[:MODE]...
//
// The layer holds the files given, /etc/passwd and /etc/group with the
// users root and nonroot (65532), and an empty /tmp. Every timestamp is the
// epoch, so the same inputs give the same image digest.
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path"
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

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "mkimage: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	out := flag.String("o", "", "the archive to write")
	name := flag.String("name", "", "the image reference, e.g. cafe.local/testapp:v1")
	entrypoint := flag.String("entrypoint", "", "the entrypoint")
	user := flag.String("user", "", "uid:gid the image runs as")
	port := flag.String("port", "", "a TCP port the image exposes")
	var cmd, envs list
	flag.Var(&cmd, "cmd", "an argument of the image's command (repeatable)")
	flag.Var(&envs, "env", "K=V in the image's environment (repeatable)")
	flag.Parse()
	if *out == "" || *name == "" || *entrypoint == "" {
		fail("-o, -name and -entrypoint are required")
	}
	tag := (*name)[strings.LastIndex(*name, ":")+1:]

	layer := buildLayer(flag.Args())
	layerDigest := digest(layer)
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
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
	}
	configJSON, _ := json.Marshal(config)
	manifest := map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: digest(configJSON), Size: int64(len(configJSON))},
		"layers":        []descriptor{{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: layerDigest, Size: int64(len(layer))}},
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

	var archive bytes.Buffer
	w := tar.NewWriter(&archive)
	put := func(name string, data []byte) {
		header := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if err := w.WriteHeader(header); err != nil {
			fail("%v", err)
		}
		w.Write(data)
	}
	put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	put("index.json", indexJSON)
	for _, blob := range [][]byte{layer, configJSON, manifestJSON} {
		put("blobs/sha256/"+strings.TrimPrefix(digest(blob), "sha256:"), blob)
	}
	if err := w.Close(); err != nil {
		fail("%v", err)
	}
	if err := os.WriteFile(*out, archive.Bytes(), 0o644); err != nil {
		fail("%v", err)
	}
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
