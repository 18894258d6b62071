# temporary probe (numpy-core), deleted after use
import sys, os; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np, timeit, torch, torch.nn.functional as F
import bncourse.numpy.functional as Fn
from bncourse.numpy import BatchNorm
torch.set_num_threads(1)
def med(f, r=5):
    n = max(1, int(3e-3 / max(1e-7, timeit.timeit(f, number=1))))
    return min(timeit.repeat(f, number=n, repeat=r)) / n * 1e3
for shp in [(4096,1024),(256,1024)]:
    rng=np.random.default_rng(0); C=shp[1]
    x=rng.standard_normal(shp,dtype=np.float32); dy=rng.standard_normal(shp,dtype=np.float32)
    bn=BatchNorm(C); bn(x)
    x3=Fn._as_ncs(x); cdt=np.dtype(np.float32); sh=np.zeros(C,np.float32)
    tx=torch.from_numpy(x).requires_grad_(True); tw=torch.ones(C,requires_grad=True); tb=torch.zeros(C,requires_grad=True); tdy=torch.from_numpy(dy)
    ty=F.batch_norm(tx,None,None,tw,tb,training=True)
    res={k:[] for k in ['np fwd','np bwd','t fwd','t bwd','mean64','centre(reuse)','sq','y','bsums','dx']}
    for r in range(7):
        res['np fwd'].append(med(lambda: bn(x)))
        res['np bwd'].append(med(lambda: bn.backward(dy)))
        res['t fwd'].append(med(lambda: F.batch_norm(tx,None,None,tw,tb,training=True)))
        res['t bwd'].append(med(lambda: torch.autograd.grad(ty,(tx,tw,tb),tdy,retain_graph=True)))
        c=bn._cache
        res['mean64'].append(med(lambda: np.einsum("ncs->c", x3, dtype=np.float64)))
        res['centre(reuse)'].append(med(lambda: Fn._centre(x3, sh, cdt, c)))
        res['sq'].append(med(lambda: np.einsum("ncs,ncs->c", c.xc, c.xc)))
        def yy():
            y = np.multiply(Fn._rows(c.xc), Fn._per_position(sh, 1, cdt)); np.add(y, Fn._per_position(sh, 1, cdt), out=y)
        res['y'].append(med(yy))
        res['bsums'].append(med(lambda: (np.einsum("ncs->c", Fn._as_ncs(dy)), np.einsum("ncs,ncs->c", Fn._as_ncs(dy), c.xc))))
    print(shp, ' | '.join('%s %.2f'%(k,np.median(v)) for k,v in res.items() if v), flush=True)
