//go:build !windows

package fileperm

import (
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// check stats path and refuses it when its permission bits intersect mask.
func check(path, what string, mask fs.FileMode) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("fileperm: %s: %w", what, err)
	}
	mode := fi.Mode().Perm()
	if mode&mask == 0 {
		return nil
	}
	return &tooOpenError{msg: describe(path, what, mode, mode&mask, fi.IsDir())}
}

// tooOpenError is a check's refusal: its message is the whole advice, and
// it matches ErrTooOpen.
type tooOpenError struct{ msg string }

func (e *tooOpenError) Error() string { return e.msg }
func (e *tooOpenError) Unwrap() error { return ErrTooOpen }

// describe says what is too open, why it matters and how to fix it:
// directories go to 0700 and files to 0600, the modes Ringfence creates
// them with.
func describe(path, what string, mode, open fs.FileMode, dir bool) string {
	var how, who string
	switch {
	case open&0o002 != 0:
		how, who = "world-writable", "any user on this machine"
	case open&0o020 != 0:
		how, who = "group-writable", "every member of its group"
	case open&0o004 != 0:
		how, who = "world-readable", "any user on this machine"
	case open&0o040 != 0:
		how, who = "group-readable", "every member of its group"
	case open&0o007 != 0:
		how, who = "open to other users", "any user on this machine"
	default:
		how, who = "open to its group", "every member of its group"
	}
	var why string
	switch {
	case open&0o022 != 0 && dir:
		why = who + " could replace what it holds"
	case open&0o022 != 0:
		why = who + " could change it"
	default:
		why = who + " could read the secret it holds"
	}
	fix := "600"
	if dir {
		fix = "700"
	}
	return fmt.Sprintf("%s %s is %s (mode %04o): %s; run 'chmod %s %s'", what, path, how, uint32(mode), why, fix, shellQuote(path))
}

// shellQuote returns path as a shell word for chmod: unchanged when it
// holds only characters no shell treats specially, else in double quotes;
// a relative path that looks like an option gets "./" in front.
func shellQuote(path string) string {
	if strings.HasPrefix(path, "-") {
		path = "./" + path
	}
	if path != "" && strings.IndexFunc(path, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+,:@%=", r))
	}) < 0 {
		return path
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range path {
		if strings.ContainsRune(`"\$`+"`", r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}
