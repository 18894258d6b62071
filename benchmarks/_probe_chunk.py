# temporary probe (numpy-core), deleted after use
import numpy as np, timeit
def med(f, r=7):
    n = max(1, int(3e-3 / max(1e-7, timeit.timeit(f, number=1))))
    return min(timeit.repeat(f, number=n, repeat=r)) / n * 1e3
K = 64
def chunked_sum(a3, b3=None):
    n, c, s = a3.shape
    nb = n // K
    spec = "bkcs,bkcs->bc" if b3 is not None else "bkcs->bc"
    ops = (a3[: nb * K].reshape(nb, K, c, s),) + ((b3[: nb * K].reshape(nb, K, c, s),) if b3 is not None else ())
    total = np.einsum(spec, *ops).sum(axis=0, dtype=np.float64)
    rest = (a3[nb * K:],) + ((b3[nb * K:],) if b3 is not None else ())
    total += np.einsum("ncs,ncs->c" if b3 is not None else "ncs->c", *rest)
    return total
for shp in [(4096,1024,1),(64,64,1024),(32,256,196),(256,1024,1),(60,100,1),(100000,2,1)]:
    x=np.random.default_rng(0).standard_normal(shp,dtype=np.float32)
    r={'f64 einsum':med(lambda: np.einsum('ncs->c',x,dtype=np.float64)),'f32 einsum':med(lambda: np.einsum('ncs->c',x)),
       'chunked':med(lambda: chunked_sum(x)), 'sq f32':med(lambda: np.einsum('ncs,ncs->c',x,x)), 'sq chunked':med(lambda: chunked_sum(x,x))}
    print(shp,' | '.join('%s %.3f'%kv for kv in r.items()), flush=True)
# accuracy of the rough mean at offset 1e4, std 1e-2
for shp in [(100000,2,1),(4096,3,1),(64,3,1024),(2000,1,1000)]:
    x=(1e4+1e-2*np.random.default_rng(1).standard_normal(shp)).astype(np.float32)
    exact=x.astype(np.float64).mean(axis=(0,2)); rough=chunked_sum(x)/(shp[0]*shp[2])
    print(shp,'rough mean error / std', np.abs(rough-exact).max()/1e-2, ' plain f32 einsum:', np.abs(np.einsum('ncs->c',x)/(shp[0]*shp[2])-exact).max()/1e-2)
