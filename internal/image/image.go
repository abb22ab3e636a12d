// Package image builds QSP's container image without a Docker daemon or
// a registry: the static qsp binary, CA certificates and a passwd entry
// for the non-root user on an empty base, written as an OCI image layout
// in a tar archive (the oci-archive format skopeo, podman and buildah
// read). It is the build step `make image` runs; the Dockerfile at the
// root produces the same file system for users' own pipelines.
package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's fixed layout. The data directory is the only place QSP
// writes, so the root file system can be mounted read-only.
const (
	UID        = 65532
	GID        = 65532
	UserName   = "nonroot"
	BinaryPath = "/qsp"
	DataDir    = "/var/lib/qsp"
	ConfigPath = "/etc/qsp/qsp.yaml"
	CACertPath = "/etc/ssl/certs/ca-certificates.crt"
	Port       = "8080/tcp"
)

// Options says what goes into the image.
type Options struct {
	// Binary is the static qsp binary (CGO_ENABLED=0) for OS/Arch.
	Binary string
	// CACerts is the CA bundle copied to /etc/ssl/certs; default
	// Debian's /etc/ssl/certs/ca-certificates.crt.
	CACerts string
	// OS and Arch of the binary; default linux and amd64.
	OS, Arch string
	// Version, Revision and Source go into the OCI labels.
	Version, Revision, Source string
	// Licenses is the SPDX expression of the license; default NOASSERTION
	// (the repository declares none yet).
	Licenses string
	// Created is the image's creation time and every file's mtime; builds
	// are reproducible for a fixed Created (SOURCE_DATE_EPOCH).
	Created time.Time
	// RefName tags the image inside the layout
	// (org.opencontainers.image.ref.name); default Version.
	RefName string
}

// Build writes the image as an OCI archive (a tarred OCI image layout)
// at out.
func Build(opts Options, out string) error {
	img, err := Image(opts)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(filepath.Dir(out), ".oci-layout-")
	if err != nil {
		return fmt.Errorf("image: layout dir: %w", err)
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("image: write layout: %w", err)
	}
	ref := opts.RefName
	if ref == "" {
		ref = opts.Version
	}
	platform := v1.Platform{OS: defaultString(opts.OS, "linux"), Architecture: defaultString(opts.Arch, "amd64")}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref}), layout.WithPlatform(platform)); err != nil {
		return fmt.Errorf("image: append image: %w", err)
	}
	if err := tarDir(dir, out, opts.Created); err != nil {
		return fmt.Errorf("image: archive: %w", err)
	}
	return nil
}

// Image assembles the image: a base layer (passwd, group, CA
// certificates, the empty data directory) and the binary's layer, with
// the configuration the chart and the Dockerfile agree on.
func Image(opts Options) (v1.Image, error) {
	if opts.Binary == "" {
		return nil, errors.New("image: no binary")
	}
	if opts.Version == "" {
		return nil, errors.New("image: no version")
	}
	bin, err := os.ReadFile(opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("image: read binary: %w", err)
	}
	ca, err := os.ReadFile(defaultString(opts.CACerts, CACertPath))
	if err != nil {
		return nil, fmt.Errorf("image: read CA certificates: %w", err)
	}
	created := opts.Created.UTC()
	base, err := layer(created, baseFiles(ca))
	if err != nil {
		return nil, err
	}
	app, err := layer(created, []file{{name: BinaryPath[1:], mode: 0o755, data: bin}})
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "qsp mkimage: passwd, group, CA certificates, " + DataDir, Comment: "base"}},
		mutate.Addendum{Layer: app, MediaType: types.OCILayer, History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "qsp mkimage: " + BinaryPath}},
	)
	if err != nil {
		return nil, fmt.Errorf("image: append layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image: config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS = defaultString(opts.OS, "linux")
	cf.Architecture = defaultString(opts.Arch, "amd64")
	cf.Created = v1.Time{Time: created}
	cf.Config = ImageConfig(opts)
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image: set config: %w", err)
	}
	return img, nil
}

// ImageConfig is the runtime configuration: the non-root user, the
// binary as entrypoint and `serve` with the configuration file the chart
// mounts as the default command.
func ImageConfig(opts Options) v1.Config {
	return v1.Config{
		User:         strconv.Itoa(UID) + ":" + strconv.Itoa(GID),
		Entrypoint:   []string{BinaryPath},
		Cmd:          []string{"serve", "--config", ConfigPath},
		WorkingDir:   DataDir,
		Env:          []string{"PATH=/", "SSL_CERT_FILE=" + CACertPath, "HOME=" + DataDir, "TMPDIR=" + DataDir},
		ExposedPorts: map[string]struct{}{Port: {}},
		Volumes:      map[string]struct{}{DataDir: {}},
		Labels:       Labels(opts),
	}
}

// Labels are the OCI image annotations
// (https://github.com/opencontainers/image-spec/blob/main/annotations.md).
func Labels(opts Options) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       "qsp",
		"org.opencontainers.image.description": "SLO controller with an embedded TSDB, policies, alerting, deploy gates and playbooks",
		"org.opencontainers.image.version":     opts.Version,
		"org.opencontainers.image.created":     opts.Created.UTC().Format(time.RFC3339),
		"org.opencontainers.image.licenses":    defaultString(opts.Licenses, "NOASSERTION"),
	}
	if opts.Revision != "" {
		l["org.opencontainers.image.revision"] = opts.Revision
	}
	if opts.Source != "" {
		l["org.opencontainers.image.source"] = opts.Source
		l["org.opencontainers.image.url"] = opts.Source
	}
	return l
}

// file is one entry of a layer; a nil data with a mode of fs.ModeDir is a
// directory.
type file struct {
	name     string
	mode     fs.FileMode
	uid, gid int
	data     []byte
}

func baseFiles(ca []byte) []file {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n%s:x:%d:%d:%s:%s:/sbin/nologin\n", UserName, UID, GID, UserName, DataDir)
	group := fmt.Sprintf("root:x:0:\nnobody:x:65534:\n%s:x:%d:\n", UserName, GID)
	return []file{
		{name: "etc", mode: fs.ModeDir | 0o755},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		// Go's resolver reads it: hosts first, then DNS.
		{name: "etc/nsswitch.conf", mode: 0o644, data: []byte("hosts: files dns\n")},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/qsp", mode: fs.ModeDir | 0o755},
		{name: "etc/ssl", mode: fs.ModeDir | 0o755},
		{name: "etc/ssl/certs", mode: fs.ModeDir | 0o755},
		{name: CACertPath[1:], mode: 0o644, data: ca},
		{name: "var", mode: fs.ModeDir | 0o755},
		{name: "var/lib", mode: fs.ModeDir | 0o755},
		{name: DataDir[1:], mode: fs.ModeDir | 0o700, uid: UID, gid: GID},
	}
}

// layer tars files (in the given order, parents first) with fixed
// owners and times, so the digest depends only on the content.
func layer(mtime time.Time, files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{
			Name:    f.name,
			Mode:    int64(f.mode.Perm()),
			Uid:     f.uid,
			Gid:     f.gid,
			ModTime: mtime,
			Format:  tar.FormatPAX,
		}
		if f.mode.IsDir() {
			h.Typeflag, h.Name = tar.TypeDir, f.name+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("image: layer %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("image: layer %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	// Compressed here, once: the library would compress again for the
	// digest and for the blob. gzip's header carries no time or name.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(buf.Bytes()); err != nil {
		return nil, fmt.Errorf("image: compress layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("image: compress layer: %w", err)
	}
	data := gz.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	return l, nil
}

// tarDir archives the OCI layout at dir into out (oci-layout first, as
// readers that stream the archive expect), entries sorted and stamped
// with mtime.
func tarDir(dir, out string, mtime time.Time) error {
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			names = append(names, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.SliceStable(names, func(i, j int) bool {
		if (names[i] == "oci-layout") != (names[j] == "oci-layout") {
			return names[i] == "oci-layout"
		}
		return names[i] < names[j]
	})
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	tw := tar.NewWriter(f)
	for _, n := range names {
		p := filepath.Join(dir, filepath.FromSlash(n))
		st, err := os.Stat(p)
		if err != nil {
			f.Close()
			return err
		}
		h := &tar.Header{Name: n, Mode: 0o644, ModTime: mtime.UTC(), Format: tar.FormatPAX}
		if st.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, n+"/", 0o755
		} else {
			h.Typeflag, h.Size = tar.TypeReg, st.Size()
		}
		if err := tw.WriteHeader(h); err != nil {
			f.Close()
			return err
		}
		if !st.IsDir() {
			if err := copyFile(tw, p); err != nil {
				f.Close()
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

func copyFile(w io.Writer, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

func defaultString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
