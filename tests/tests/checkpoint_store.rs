//! The checkpoint store's behaviour cases (`playlake_checkpoint::testing`) against
//! moto's S3, where fencing rests on `If-None-Match: *`, and the local filesystem.

use playlake_checkpoint::{testing, Lake};
use playlake_tests::stack::{s3_bucket, unique_name, Stack};

#[tokio::test]
async fn s3_passes_every_case() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let bucket = s3_bucket(&stack);
    let lake = Lake::open_with(&format!("s3://{bucket}/lake"), &stack.s3_options())
        .expect("open the moto lake");
    testing::all_cases(&lake, &unique_name("s3")).await;
}

#[tokio::test]
async fn s3_lake_at_bucket_root_passes_every_case() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let bucket = s3_bucket(&stack);
    let lake = Lake::open_with(&format!("s3://{bucket}"), &stack.s3_options())
        .expect("open the moto lake");
    testing::all_cases(&lake, &unique_name("s3root")).await;
}

#[tokio::test]
async fn filesystem_passes_every_case() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::open(&format!("file://{}", dir.path().display())).expect("file lake");
    testing::all_cases(&lake, &unique_name("fs")).await;
}
