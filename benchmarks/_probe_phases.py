# temporary probe (numpy-core), deleted after use
import sys, os; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np, time, timeit
import bncourse.numpy.functional as Fn
from bncourse.numpy.functional import _sample_blocks, _rows, _per_position
import torch, torch.nn.functional as F
torch.set_num_threads(1)
def med(f, r=15):
    n = max(1, int(3e-3 / max(1e-7, timeit.timeit(f, number=1))))
    return np.median(timeit.repeat(f, number=n, repeat=r)) / n * 1e3
for shp in [(256,1024),(32,256,14,14)]:
    rng=np.random.default_rng(0)
    x=rng.standard_normal(shp,dtype=np.float32); dy=rng.standard_normal(shp,dtype=np.float32)
    N,C=shp[:2]; x3=Fn._as_ncs(x); dy3=Fn._as_ncs(dy); S=x3.shape[2]; m=N*S; cdt=np.dtype(np.float32)
    sh=np.zeros(C,np.float32); xc=x3.copy(); XC=np.empty_like(x3); Y=np.empty((N,C*S),np.float32)
    r={}
    r['mean64']=med(lambda: np.einsum("ncs->c", x3, dtype=np.float64))
    r['mean32']=med(lambda: np.einsum("ncs->c", x3))
    r['sub fresh']=med(lambda: np.subtract(_rows(x3), _per_position(sh, S, cdt), dtype=cdt))
    r['sub out']=med(lambda: np.subtract(_rows(x3), _per_position(sh, S, cdt), out=_rows(XC)))
    r['sq']=med(lambda: np.einsum("ncs,ncs->c", xc, xc))
    def yf():
        y = np.multiply(_rows(xc), _per_position(sh, S, cdt)); np.add(y, _per_position(sh, S, cdt), out=y)
    r['y fresh']=med(yf)
    r['y out']=med(lambda: (np.multiply(_rows(xc), _per_position(sh, S, cdt), out=Y), np.add(Y, _per_position(sh, S, cdt), out=Y)))
    w=np.ones(C,np.float32); b=np.zeros(C,np.float32)
    r['FWD']=med(lambda: Fn.batchnorm_forward(x,w,b,None,None,training=True))
    _,cache=Fn.batchnorm_forward(x,w,b,None,None,training=True)
    r['bsum']=med(lambda: np.einsum("ncs->c", dy3)); r['bdot']=med(lambda: np.einsum("ncs,ncs->c", dy3, xc))
    r['BWD']=med(lambda: Fn.batchnorm_backward(dy,cache))
    tx=torch.from_numpy(x).requires_grad_(True); tw=torch.ones(C,requires_grad=True); tb=torch.zeros(C,requires_grad=True); tdy=torch.from_numpy(dy)
    r['tFWD']=med(lambda: F.batch_norm(tx,None,None,tw,tb,training=True))
    ty=F.batch_norm(tx,None,None,tw,tb,training=True)
    r['tBWD']=med(lambda: torch.autograd.grad(ty,(tx,tw,tb),tdy,retain_graph=True))
    print(shp, ' | '.join('%s %.3f'%kv for kv in r.items()), flush=True)
