//! VMAF and VMAF NEG through libvmaf (vendored and built by the `vmaf-head-sys` crate).

use std::ffi::CString;
use std::ptr;

use anyhow::{Result, bail};
use vmaf_head_sys as sys;

use crate::frame::Frame;

/// Mean VMAF (v0.6.1) and VMAF NEG (v0.6.1neg) of `distorted` against `reference`.
pub fn vmaf(reference: &[Frame], distorted: &[Frame]) -> Result<(f64, f64)> {
    let n = reference.len().min(distorted.len());
    if n == 0 {
        bail!("no frames to score");
    }
    let (w, h) = (reference[0].width, reference[0].height);
    if distorted[0].width != w || distorted[0].height != h {
        bail!("VMAF needs equal sizes: {}x{} vs {}x{}", w, h, distorted[0].width, distorted[0].height);
    }
    // SAFETY: every pointer handed to libvmaf is either null where the API allows it or comes from
    // libvmaf itself; pictures are allocated by vmaf_picture_alloc and owned by libvmaf after
    // vmaf_read_pictures; the context and models are released on every path below.
    unsafe {
        let cfg = sys::VmafConfiguration {
            log_level: sys::VmafLogLevel_VMAF_LOG_LEVEL_NONE,
            n_threads: 2,
            n_subsample: 1,
            cpumask: 0,
            gpumask: 0,
        };
        let mut ctx = ptr::null_mut();
        if sys::vmaf_init(&mut ctx, cfg) != 0 {
            bail!("vmaf_init failed");
        }
        let mut models = Vec::new();
        let mut result = (|| -> Result<(f64, f64)> {
            for version in ["vmaf_v0.6.1", "vmaf_v0.6.1neg"] {
                let name = CString::new(version)?;
                let mut mcfg = sys::VmafModelConfig { name: name.as_ptr(), flags: 0 };
                let mut model = ptr::null_mut();
                if sys::vmaf_model_load(&mut model, &mut mcfg, name.as_ptr()) != 0 {
                    bail!("libvmaf has no built-in model {version}");
                }
                models.push(model);
                if sys::vmaf_use_features_from_model(ctx, model) != 0 {
                    bail!("cannot set up the features of {version}");
                }
            }
            for i in 0..n {
                let mut r = picture(&reference[i])?;
                let mut d = picture(&distorted[i])?;
                if sys::vmaf_read_pictures(ctx, &mut r, &mut d, i as u32) != 0 {
                    bail!("vmaf_read_pictures failed at frame {i}");
                }
            }
            if sys::vmaf_read_pictures(ctx, ptr::null_mut(), ptr::null_mut(), 0) != 0 {
                bail!("flushing libvmaf failed");
            }
            let mut scores = [0f64; 2];
            for (score, &model) in scores.iter_mut().zip(&models) {
                if sys::vmaf_score_pooled(ctx, model, sys::VmafPoolingMethod_VMAF_POOL_METHOD_MEAN, score, 0, n as u32 - 1) != 0 {
                    bail!("pooling VMAF failed");
                }
            }
            Ok((scores[0], scores[1]))
        })();
        for m in models {
            sys::vmaf_model_destroy(m);
        }
        if sys::vmaf_close(ctx) != 0 && result.is_ok() {
            result = Err(anyhow::anyhow!("vmaf_close failed"));
        }
        result
    }
}

/// Copies a frame into a libvmaf-owned YUV420P picture.
unsafe fn picture(f: &Frame) -> Result<sys::VmafPicture> {
    let mut pic: sys::VmafPicture = unsafe { std::mem::zeroed() };
    if unsafe { sys::vmaf_picture_alloc(&mut pic, sys::VmafPixelFormat_VMAF_PIX_FMT_YUV420P, 8, f.width as u32, f.height as u32) } != 0 {
        bail!("vmaf_picture_alloc failed");
    }
    let (cw, ch) = f.chroma_size();
    for (p, (src, w, h)) in [(f.y(), f.width, f.height), (f.u(), cw, ch), (f.v(), cw, ch)].into_iter().enumerate() {
        let stride = pic.stride[p] as usize;
        let dst = pic.data[p] as *mut u8;
        for row in 0..h {
            unsafe { ptr::copy_nonoverlapping(src[row * w..].as_ptr(), dst.add(row * stride), w) };
        }
    }
    Ok(pic)
}
