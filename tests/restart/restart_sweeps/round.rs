use super::*;

/// What a run keeps of each persisted operator's handle: `resume_at`, the greatest upper, the error slot
/// and the resume state.
type Handle = (
    u64,
    u64,
    ddpersist::trace::ErrorSlot,
    ddpersist::operators::ResumeState,
);
/// The rows source's input.
type RowsInput = differential_dataflow::input::InputSession<u64, Row, isize>;
/// The upsert source's input: `(key, val or deletion, time)`.
type UpsertsInput = timely::dataflow::InputHandle<
    u64,
    timely::container::CapacityContainerBuilder<Vec<(String, Option<Val>, u64)>>,
>;

/// One run's work on one worker (see `run`); `built`: a barrier every worker passes once its dataflows
/// are built, before any steps them.
#[allow(clippy::too_many_arguments)]
pub(super) fn round(
    worker: &mut timely::worker::Worker,
    ctx: &Ctx,
    plan: &Plan,
    l: &OutLog,
    rs: &Mutex<Vec<(usize, u64)>>,
    errs: &Mutex<Vec<String>>,
    built: Option<&std::sync::Barrier>,
    agree: bool,
) {
    let (store, manager) = (&ctx.store, &ctx.manager);
    let (source, feed, times, seed) = (ctx.source, ctx.feed, ctx.times, ctx.seed);
    let (rows, ups) = (&ctx.rows, &ctx.ups);
    let index = worker.index();
    let peers = worker.peers();
    let probe = ProbeHandle::<u64>::new();
    let seals = match (seed + plan.stop.iter().flatten().sum::<u64>()) % 3 {
        0 => ddpersist::operators::SealMode::Adaptive,
        1 => ddpersist::operators::SealMode::Pipelined,
        _ => ddpersist::operators::SealMode::Inline,
    };
    let po = ddpersist::operators::PersistOptions {
        durable: false,
        seals,
    };
    let (input, handles) = worker.dataflow::<u64, _, _>(|scope| {
        let (input, rows) = scope.new_collection::<Row, isize>();
        let (up_in, up_stream) =
            timely::dataflow::operators::Input::new_input::<Vec<(String, Option<Val>, u64)>>(&scope);
        let (p, h0) = match source {
            Source::Rows => {
                let token = manager.token("p", index).unwrap();
                let (p, hp) = rows.persist(token).unwrap();
                (
                    p,
                    (
                        hp.resume_at(),
                        hp.resume_state().greatest_upper,
                        hp.errors().clone(),
                        hp.resume_state(),
                    ),
                )
            }
            Source::Upserts => {
                use ddpersist::operators::UpsertPersisted;
                let (u, hu) = up_stream.upsert_persisted_as::<isize>(store, "u").unwrap();
                let u = rows.concat(u);
                (
                    u,
                    (
                        hu.resume_at(),
                        hu.resume_state().greatest_upper,
                        hu.errors().clone(),
                        hu.resume_state(),
                    ),
                )
            }
        };
        let a = p.arrange_by_key_persisted_with(store, "a", po).unwrap();
        sink(
            a.clone().as_collection(|k, v| format!("row {k:?}={v:?}")),
            l,
            &probe,
        );
        let cnt = a.clone().count_total();
        sink(cnt.clone().map(|x| format!("cnt {x:?}")), l, &probe);
        let b = (!plan.partial).then(|| {
            let b = cnt
                .clone()
                .map(|(k, n)| (n as i64, k))
                .arrange_by_key_persisted_with(store, "b", po)
                .unwrap();
            sink(b.clone().as_collection(|n, k| format!("b {n}:{k:?}")), l, &probe);
            sink(
                b.clone().threshold_total(thr).map(|x| format!("bthr {x:?}")),
                l,
                &probe,
            );
            b
        });
        let reduced = a.clone().reduce(red);
        sink(
            a.clone()
                .join(reduced.clone())
                .map(|(k, (v, s))| format!("joinc {k:?} {v:?} {s}")),
            l,
            &probe,
        );
        let evens = cnt.clone().filter(|(_, n)| n % 2 == 0).map(|(k, _)| k);
        sink(
            a.clone().semijoin(evens.clone()).map(|x| format!("semi {x:?}")),
            l,
            &probe,
        );
        sink(
            a.clone().antijoin(evens).map(|x| format!("anti {x:?}")),
            l,
            &probe,
        );
        let r = (!plan.partial).then(|| {
            let r = reduced.arrange_by_key_persisted_with(store, "r", po).unwrap();
            sink(r.clone().as_collection(|k, s| format!("r {k:?}={s}")), l, &probe);
            sink(
                a.clone()
                    .join(r.clone())
                    .map(|(k, (v, s))| format!("join {k:?} {v:?} {s}")),
                l,
                &probe,
            );
            r
        });
        let tri = |h: &ddpersist::operators::PersistHandle| {
            (
                h.resume_at(),
                h.resume_state().greatest_upper,
                h.errors().clone(),
                h.resume_state(),
            )
        };
        let mut hs = vec![h0, tri(a.handle().unwrap())];
        hs.extend(b.iter().map(|b| tri(b.handle().unwrap())));
        hs.extend(r.iter().map(|r| tri(r.handle().unwrap())));
        ((input, up_in, a.trace.clone(), b.map(|b| b.trace.clone())), hs)
    });
    let (input, mut handles) = (input, handles);
    let (input, up_in, mut a_trace, mut b_trace) = input;
    let input = (input, up_in);
    // A second dataflow over imports of `a` and `b`, with a persisted operator of its own.
    if let Some(b_trace) = b_trace.as_mut() {
        let hd = worker.dataflow::<u64, _, _>(|scope| {
            let ai = a_trace.import(scope);
            let bi = b_trace.import(scope);
            sink(
                ai.clone().count_total().map(|x| format!("D2cnt {x:?}")),
                l,
                &probe,
            );
            let d = bi
                .as_collection(|n, k| (k.clone(), *n))
                .arrange_by_key_persisted_with(store, "d", po)
                .unwrap();
            sink(
                d.clone().as_collection(|k, n| format!("D2d {k:?}={n}")),
                l,
                &probe,
            );
            sink(
                ai.join(d.clone())
                    .map(|(k, (v, n))| format!("D2join {k:?} {v:?} {n}")),
                l,
                &probe,
            );
            let h = d.handle().unwrap();
            (
                h.resume_at(),
                h.resume_state().greatest_upper,
                h.errors().clone(),
                h.resume_state(),
            )
        });
        handles.push(hd);
    }
    drop((a_trace, b_trace));
    if let Some(b) = built {
        b.wait();
    }
    let (resume, greatest) = if agree {
        // Workers rebuild at different moments: agree on each operator's state (README).
        let states: Vec<_> = handles
            .iter()
            .map(|h| ddpersist::operators::agree_resume_state(worker, &[h.3]))
            .collect();
        let resume = states.iter().map(|s| s.resume_at()).min().unwrap();
        (resume, states.iter().map(|s| s.greatest_upper).max().unwrap())
    } else {
        let resume = handles.iter().map(|h| h.0).min().unwrap();
        (resume, handles.iter().map(|h| h.1).max().unwrap())
    };
    let (input, up_in) = input;
    let mut up_in = Some(up_in);
    rs.lock().unwrap().push((index, resume));
    let mut input = Some(input);
    let deadline = Instant::now() + DEADLINE;
    let all_alive = plan.stop.iter().map(|s| s.unwrap_or(u64::MAX)).min().unwrap();
    let mine = |j: usize, t: u64| match feed {
        Feed::Worker0 => index == 0,
        Feed::Spread | Feed::Ahead => j % peers == index,
        Feed::LastEndsEarly => j % peers == index && (index + 1 < peers || t < 4),
    };
    let errs_of = |hs: &Vec<Handle>| hs.iter().filter_map(|h| h.2.message()).collect::<Vec<_>>();
    let feed_time = |input: &mut Option<RowsInput>, up_in: &mut Option<UpsertsInput>, t: u64| {
        if let (Source::Upserts, Some(i)) = (source, up_in.as_mut()) {
            i.advance_to(t);
            let sends: Vec<u64> = match feed {
                Feed::Ahead if t == resume => (t..=t + 2).filter(|s| *s < times).collect(),
                Feed::Ahead => (t + 2 < times).then_some(t + 2).into_iter().collect(),
                _ => vec![t],
            };
            for s in sends {
                for (j, (k, v)) in ups[s as usize].iter().enumerate() {
                    if mine(j, s) {
                        i.send((k.clone(), v.clone(), s));
                    }
                }
            }
            i.advance_to(t + 1);
            i.flush();
        }
        if feed == Feed::LastEndsEarly && index + 1 == peers && t >= 3 {
            *up_in = None;
        }
        if source == Source::Upserts {
            // The rows input only advances.
            if let Some(i) = input.as_mut() {
                i.advance_to(t + 1);
                i.flush();
            }
            return;
        }
        if let Some(i) = input.as_mut() {
            i.advance_to(t);
            let sends: Vec<u64> = match feed {
                Feed::Ahead if t == resume => (t..=t + 2).filter(|s| *s < times).collect(),
                Feed::Ahead => (t + 2 < times).then_some(t + 2).into_iter().collect(),
                _ => vec![t],
            };
            for s in sends {
                for (j, (row, d)) in rows[s as usize].iter().enumerate() {
                    if mine(j, s) {
                        i.update_at(row.clone(), s, *d);
                    }
                }
            }
            i.advance_to(t + 1);
            i.flush();
        }
        if feed == Feed::LastEndsEarly && index + 1 == peers && t >= 3 {
            *input = None;
        }
    };
    if feed == Feed::LastEndsEarly && index + 1 == peers && resume >= 4 {
        input = None;
        up_in = None;
    }
    if plan.close {
        let end = plan.stop[0].unwrap().max(greatest.saturating_sub(1));
        for t in resume..=end.min(times - 1) {
            feed_time(&mut input, &mut up_in, t);
        }
        drop(input.take());
        drop(up_in.take());
        if plan.abrupt_close {
            for _ in 0..plan.steps[index] {
                worker.step();
            }
            for e in errs_of(&handles) {
                errs.lock().unwrap().push(format!("worker {index}: {e}"));
            }
            common::drop_dataflows(worker);
            return;
        }
        worker.step_while(|| !probe.done() && Instant::now() < deadline && errs_of(&handles).is_empty());
        if !probe.done() {
            errs.lock().unwrap().push(format!(
                "worker {index}: closed run did not complete ({:?})",
                errs_of(&handles)
            ));
        }
        common::drop_dataflows(worker);
        return;
    }
    let mut stopped = false;
    for t in resume..times {
        feed_time(&mut input, &mut up_in, t);
        if t < all_alive {
            worker.step_while(|| {
                probe.less_than(&(t + 1)) && Instant::now() < deadline && errs_of(&handles).is_empty()
            });
        }
        if plan.stop[index].is_some_and(|s| t >= s) {
            for _ in 0..plan.steps[index] {
                worker.step();
            }
            stopped = true;
            break;
        }
        if t >= all_alive {
            for _ in 0..3 {
                worker.step();
            }
        }
    }
    if !stopped && plan.stop[index].is_some() {
        for _ in 0..plan.steps[index] {
            worker.step();
        }
    } else if !stopped {
        if let Some(i) = input.as_mut() {
            i.advance_to(times);
            i.flush();
        }
        if let Some(i) = up_in.as_mut() {
            i.advance_to(times);
            i.flush();
        }
        worker.step_while(|| {
            probe.less_than(&times) && Instant::now() < deadline && errs_of(&handles).is_empty()
        });
        if probe.less_than(&times) {
            errs.lock().unwrap().push(format!(
                "worker {index}: run did not complete through {times} (errors {:?})",
                errs_of(&handles)
            ));
        }
    }
    for e in errs_of(&handles) {
        errs.lock().unwrap().push(format!("worker {index}: {e}"));
    }
    common::drop_dataflows(worker);
}
