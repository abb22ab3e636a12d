package crd

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
)

// ReadDocs reads the doc comments of the struct types and fields declared
// in the Go files of dir (not tests), for schema descriptions.
func ReadDocs(dirs ...string) (Docs, error) {
	docs := Docs{}
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			return nil, err
		}
		fset := token.NewFileSet()
		for _, path := range files {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return nil, err
			}
			f, err := parser.ParseFile(fset, path, src, parser.ParseComments)
			if err != nil {
				return nil, err
			}
			for _, decl := range f.Decls {
				gd, ok := decl.(*ast.GenDecl)
				if !ok || gd.Tok != token.TYPE {
					continue
				}
				for _, sp := range gd.Specs {
					ts := sp.(*ast.TypeSpec)
					doc := ts.Doc
					if doc == nil && len(gd.Specs) == 1 {
						doc = gd.Doc
					}
					if d := clean(doc); d != "" {
						docs[ts.Name.Name] = d
					}
					st, ok := ts.Type.(*ast.StructType)
					if !ok {
						continue
					}
					for _, fl := range st.Fields.List {
						d := clean(fl.Doc)
						if d == "" {
							d = clean(fl.Comment)
						}
						if d == "" {
							continue
						}
						for _, n := range fl.Names {
							docs[ts.Name.Name+"."+n.Name] = d
						}
					}
				}
			}
		}
	}
	return docs, nil
}

// clean joins a comment group into one paragraph.
func clean(g *ast.CommentGroup) string {
	if g == nil {
		return ""
	}
	return strings.Join(strings.Fields(g.Text()), " ")
}
