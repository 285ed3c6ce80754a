#!/usr/bin/env python3
"""How the corpus was copied (provenance helper, not part of the build).

Copies an OpenAPI root file plus every file it reaches through relative
`$ref`s (and `externalValue`s), transitively, out of a git repository at a
given commit, byte for byte, keeping the layout relative to the deepest common
directory.  Git symlinks are replaced by the content of their target (what a
checkout would read).  Needs python3, PyYAML and git.

usage: extract_multifile.py GITDIR COMMIT ROOTPATH DESTDIR
"""
import sys, os, json, posixpath, subprocess, yaml
gd, commit, root, dest = sys.argv[1:5]
symlinks = []
def show(p):
    ls = subprocess.run(['git', '--git-dir', gd, 'ls-tree', commit, '--', p], capture_output=True, text=True).stdout.split()
    data = subprocess.run(['git', '--git-dir', gd, 'show', f'{commit}:{p}'], check=True, capture_output=True).stdout
    if ls and ls[0] == '120000':  # git symlink: store the target's content (what a checkout reads)
        tgt = posixpath.normpath(posixpath.join(posixpath.dirname(p), data.decode().strip()))
        symlinks.append((p, tgt))
        return show(tgt)
    return data
def refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ('$ref', 'externalValue') and isinstance(v, str):
                yield v
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)
seen = {}
todo = [posixpath.normpath(root)]
missing = []
while todo:
    p = todo.pop()
    if p in seen: continue
    try:
        data = show(p)
    except subprocess.CalledProcessError:
        missing.append(p); continue
    seen[p] = data
    try:
        doc = json.loads(data) if p.endswith('.json') else yaml.safe_load(data)
    except Exception as e:
        print('parse fail', p, e); continue
    for r in refs(doc):
        f = r.split('#', 1)[0]
        if not f or '://' in f: continue
        todo.append(posixpath.normpath(posixpath.join(posixpath.dirname(p), f)))
base = os.path.commonpath([posixpath.dirname(p) or '.' for p in seen]) if len(seen) > 1 else posixpath.dirname(root)
for p, data in seen.items():
    rel = posixpath.relpath(p, base or '.')
    out = os.path.join(dest, rel)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    open(out, 'wb').write(data)
print('base', base, 'files', len(seen), 'bytes', sum(map(len, seen.values())))
print('root ->', posixpath.relpath(root, base or '.'))
if missing: print('MISSING', missing)
for a,b in symlinks: print('SYMLINK', a, '->', b)
