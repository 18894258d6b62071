# temporary probe (numpy-core), deleted after use
import sys, os; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np, time, timeit
import bncourse.numpy.functional as Fn
from bncourse.numpy.functional import _sample_blocks
def med(f, r=15):
    n = max(1, int(2e-3 / max(1e-7, timeit.timeit(f, number=1))))
    return np.median(timeit.repeat(f, number=n, repeat=r)) / n * 1e3
for shp in [(256,1024),(32,256,14,14),(4096,1024)]:
    rng=np.random.default_rng(0)
    x=rng.standard_normal(shp,dtype=np.float32); dy=rng.standard_normal(shp,dtype=np.float32)
    N,C=shp[:2]; x3=x.reshape(N,C,-1); dy3=dy.reshape(N,C,-1); m=x3.shape[0]*x3.shape[2]
    sc=np.ones((C,1),np.float32); xc=x3.copy(); o=np.empty_like(x3)
    r={}
    r['copy']=med(lambda: np.copyto(o,x3))
    r['sum32']=med(lambda: np.einsum('ncs->c',x3))
    r['sum64']=med(lambda: np.einsum('ncs->c',x3,dtype=np.float64))
    r['addreduce64']=med(lambda: np.add.reduce(x3,axis=(0,2),dtype=np.float64))
    def subsq():
        xc = np.empty(x3.shape, np.float32); s=np.zeros(C)
        for rows in _sample_blocks(xc):
            b=np.subtract(x3[rows], sc, out=xc[rows]); s+=np.einsum('ncs,ncs->c',b,b)
    r['sub+sq blocks']=med(subsq)
    def subsq_plain():
        xc=np.subtract(x3,sc); s=np.einsum('ncs,ncs->c',xc,xc)
    r['sub+sq plain']=med(subsq_plain)
    def yb():
        y=np.empty(x3.shape,np.float32)
        for rows in _sample_blocks(y):
            np.multiply(xc[rows],sc,out=y[rows]); np.add(y[rows],sc,out=y[rows])
    r['y blocks']=med(yb)
    def yp():
        y=np.multiply(xc,sc); np.add(y,sc,out=y)
    r['y plain']=med(yp)
    def bs():
        s1=np.zeros(C); s2=np.zeros(C)
        for rows in _sample_blocks(dy3):
            s1+=np.einsum('ncs->c',dy3[rows]); s2+=np.einsum('ncs,ncs->c',dy3[rows],xc[rows])
    r['bwd sums blocks']=med(bs)
    r['bwd sums plain']=med(lambda: (np.einsum('ncs->c',dy3), np.einsum('ncs,ncs->c',dy3,xc)))
    def dxb():
        dx=np.empty(dy3.shape,np.float32); bl=_sample_blocks(dx); scr=np.empty((bl[0].stop-bl[0].start,)+dx.shape[1:],np.float32)
        for rows in bl:
            out,t=dx[rows],scr[:dx[rows].shape[0]]
            np.multiply(dy3[rows],sc,out=out); np.multiply(xc[rows],sc,out=t); np.add(out,t,out=out); np.add(out,sc,out=out)
    r['dx blocks']=med(dxb)
    def dxp():
        dx=np.multiply(dy3,sc); dx+=np.multiply(xc,sc); dx+=sc
    r['dx plain']=med(dxp)
    w=np.ones(C,np.float32); bb=np.zeros(C,np.float32)
    r['FWD']=med(lambda: Fn.batchnorm_forward(x,w,bb,None,None,training=True))
    _,cache=Fn.batchnorm_forward(x,w,bb,None,None,training=True)
    r['BWD']=med(lambda: Fn.batchnorm_backward(dy,cache))
    print(shp, ' | '.join('%s %.3f'%kv for kv in r.items()), flush=True)
