cd /work/main
export TF_CPP_MIN_LOG_LEVEL=3
exec nice -n 10 .venv/bin/ntk-bridge compare --dataset omniglot --algorithms mtl,maml,anil,protonet,metaoptnet-ridge \
  --shots 1,5 --channels 16 --max-steps 20000 --time-budget 3600 --eval-every 50 --val-episodes 100 \
  --test-episodes 1000 --config experiments/results/compare_omniglot/mtl_fixed/override.json \
  --set early_stop_patience=10 --set schedule=plateau --no-progress --out runs/compare_converged
