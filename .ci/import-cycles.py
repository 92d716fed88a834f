#!/usr/bin/env python3
"""Import cycles between lumiq's modules: the graph of `crate::` and `super::` paths in
src/ (test code left out), at the level of top-level modules and of sibling files within
a module (a file and its parent excepted). Prints every cycle; exits 1 if there is one.
"""
import os,re,sys
from collections import defaultdict
root=os.path.join(os.path.dirname(os.path.abspath(__file__)),'..','src')
def modpath(f):
    rel=os.path.relpath(f,root)[:-3].split('/')
    if rel[-1] in ('mod','lib','main'): rel=rel[:-1]
    return rel
files=[os.path.join(d,f) for d,_,fs in os.walk(root) for f in fs if f.endswith('.rs')]
mods={tuple(modpath(f)):f for f in files}
def resolve(path):
    # longest prefix that's a module
    for k in range(len(path),0,-1):
        if tuple(path[:k]) in mods: return tuple(path[:k])
    return None
level=int(sys.argv[1]) if len(sys.argv)>1 else 2
edges=defaultdict(set)
for m,f in mods.items():
    if m and m[-1]=='tests': continue
    s=open(f).read()
    i=s.find('#[cfg(test)]')
    if i>=0: s=s[:i]
    s='\n'.join(l for l in s.split('\n') if not l.strip().startswith('//'))
    refs=[]
    for mm in re.finditer(r'\bcrate::((?:\w+::)*\w+)',s):
        refs.append(mm.group(1).split('::'))
    for mm in re.finditer(r'\b((?:super::)+)((?:\w+::)*\w+)',s):
        up=mm.group(1).count('super::')
        base=list(m)
        if f.endswith('mod.rs') or f.endswith('lib.rs'): pass
        base=base[:len(base)-up] if up<=len(base) else []
        refs.append(base+mm.group(2).split('::'))
    # use self::x / grouped use crate::{a, b}
    for mm in re.finditer(r'use crate::\{([^}]*)\}',s):
        for part in mm.group(1).split(','):
            part=part.strip().split('::')
            if part[0]: refs.append(part)
    for r in refs:
        t=resolve(r)
        if t is None or t==m: continue
        a=m[:level]; b=t[:level]
        if a==b: continue
        # ignore parent<->child edges
        if a[:len(b)]==b or b[:len(a)]==a: continue
        edges[a].add(b)
# tarjan
idx={};low={};st=[];on=set();out=[];c=[0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
    for w in edges.get(v,()):
        if w not in idx: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],idx[w])
    if low[v]==idx[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v:break
        if len(comp)>1: out.append(comp)
for v in list(edges):
    if v not in idx: sc(v)
for comp in out:
    names=['::'.join(x) for x in comp]
    print('CYCLE:',names)
    for a in comp:
        for b in edges[a]:
            if b in comp: print('   ','::'.join(a),'->','::'.join(b))
print(len(out),'import cycles at module depth',level)
sys.exit(1 if out else 0)
